"""A device-aware prior: each candidate's latency on the search's device before any trial (#39).

The model, for one image at batch 1 on ``device``, the first that applies:

- on the CPU, for a candidate with a published CPU row (timm's
  ``benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv``, images/s at batch 1):
  ``latency_ms = 1000 / row images/s * s * (size / row size) ** 2``, where ``s`` is this CPU's
  slowdown against that row, :data:`REFERENCE`'s measured time over its own row's
  (:data:`REFERENCE_ROW_IPS`). Measured on this project's CPU against the GMACs model below
  (``benchmarks/latency_prior.py``, docs/performance.md, two runs over 11 networks):
  measured / prior stayed within 0.80-1.62, where the GMACs model's spread by a factor of 4,
  down to 0.34 (it puts dense ResNets about 3x too slow, which a 2x margin would wrongly
  drop);
- ``latency_ms = GMACs(size) * k`` where ``GMACs(size)`` is the candidate's published
  multiply-accumulates (timm's benchmark row, :attr:`RankingEntry.gmacs`) scaled to the input
  size by ``(size / row size) ** 2``, and ``k`` (ms per GMAC) is this device's constant;
- without GMACs (a zoo that publishes none), ``latency_ms = params (M) * k_params``;
- ``k`` and ``k_params`` are measured once per process and device (:func:`device_constant`):
  :data:`REFERENCE` (timm, random weights: nothing is downloaded) runs at batch 1, 224 pixels,
  for :data:`REFERENCE_SECONDS` and times it as a trial's ``latency_ms`` is timed
  (:func:`autotransfer.finetune.cost.latency_seconds`: the median pass of the quietest block
  of passes, which ignores the passes other processes interrupted); that time over its
  published :data:`REFERENCE_GMACS` (over :data:`REFERENCE_MPARAMS`) is
  the constant, and over its own CPU row's time, this CPU's slowdown ``s`` above.
- On a GPU whose model has a row in the zoo's GPU table (the shipped snapshot holds one:
  ``benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv``, AMP at batch 1024), the throughput
  is that row's; batch-1 latency is not in that table, so it stays the GMACs model measured on
  that GPU. Every other GPU (an H100 has no row) uses the model alone.

The prior is rough (depthwise networks run fewer MACs per millisecond than dense ones; see
docs/performance.md for how it ranks the packaged backbones on this project's CPU), so a bound
drops a candidate only when its prior is over :data:`MARGIN` times the bound: a ranked space's
``max_latency_ms``, ``autotransfer backbones --max-latency-ms`` and, before a trial loads its
backbone, a ``latency_ms`` constraint (:func:`check_latency_before_load`; the trained model is
measured after training as before).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from autotransfer.contract.collect import get_ranking_entries

if TYPE_CHECKING:
    from autotransfer.contract.ranking import RankingEntry
    from autotransfer.study.selection import Rule

#: timm's ``mobilenetv3_large_100``: 0.23 GMACs and 5.48 M parameters at 224 pixels
#: (``benchmark-infer-fp32-nchw-pt240-cpu-i7_12700h-dynamo.csv``, the shipped snapshot).
REFERENCE, REFERENCE_SIZE = "mobilenetv3_large_100", 224
REFERENCE_GMACS, REFERENCE_MPARAMS = 0.23, 5.48
REFERENCE_ROW_IPS = 135.11  # its images/s at batch 1 in that table's row (i7-12700H)
REFERENCE_SECONDS = 0.5  # the reference's timing, warm-up included
LIMIT_SECONDS = 2.0  # the whole timing, warm-up included, on a machine too busy for the budget
MARGIN = 2.0  # a bound drops a candidate whose prior is over MARGIN times it


@dataclass(frozen=True)
class DeviceConstant:
    """This device's speed: ``ms_per_gmac`` and ``ms_per_mparam`` at batch 1 (see the module
    docstring), from ``reference_ms`` (the reference's median pass) on ``device`` (``cpu``,
    ``cuda:0``) with ``threads`` CPU threads; ``name`` is the GPU model or ``cpu``."""

    device: str
    name: str
    ms_per_gmac: float
    ms_per_mparam: float
    reference_ms: float
    threads: int


@dataclass(frozen=True)
class DevicePrior:
    """One candidate's prior on this device: ``latency_ms`` (batch 1), ``images_per_s`` and
    where they come from (``source``, one line)."""

    latency_ms: float
    images_per_s: float
    source: str


def describe(constant: DeviceConstant) -> str:
    """One line: what the prior multiplies, on which device, timed how."""
    where = (f"this cpu ({constant.threads} threads)" if constant.name == "cpu"
             else constant.name)
    row = (f"the published i7-12700H CPU row x "
           f"{constant.reference_ms * REFERENCE_ROW_IPS / 1000:.2f} (this cpu's slowdown), else "
           if constant.name == "cpu" else "")
    return (f"{row}published GMACs x {constant.ms_per_gmac:.1f} ms/GMAC (else parameters x "
            f"{constant.ms_per_mparam:.2f} ms/M), timed on {where} with timm/{REFERENCE} "
            f"at batch 1 ({constant.reference_ms:.1f} ms)")


def _name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


@cache
def _measure(device: str, threads: int, budget_s: float) -> DeviceConstant:
    import timm
    import torch

    from autotransfer.finetune.cost import latency_seconds

    model = timm.create_model(REFERENCE, pretrained=False, num_classes=0).eval().to(device)
    x = torch.randn(1, 3, REFERENCE_SIZE, REFERENCE_SIZE, device=device)
    # as a trial's latency_ms is measured: the median pass of the quietest block
    ms = 1000 * latency_seconds(model, x, torch.device(device), budget_s=budget_s,
                                limit_s=LIMIT_SECONDS)
    return DeviceConstant(device, _name(device), ms / REFERENCE_GMACS, ms / REFERENCE_MPARAMS,
                          ms, threads)


def device_constant(device: Any = "cpu", *, budget_s: float = REFERENCE_SECONDS
                    ) -> DeviceConstant:
    """This device's constant, measured once per process, device and thread count (a few
    tenths of a second; see the module docstring).

    Args:
        device: a ``torch.device`` or its name (``cpu``, ``cuda``, ``cuda:1``).
        budget_s: seconds the reference may run (at least three passes run).
    """
    import torch

    name = str(torch.device(device))
    if name == "cuda":
        name = f"cuda:{torch.cuda.current_device()}"
    return _measure(name, torch.get_num_threads(), budget_s)


def _cpu_row(entry: RankingEntry) -> tuple[float, int | None, str] | None:
    """``(images/s, its image size, its source)`` of the entry's CPU benchmark row, or None."""
    speed, source = entry.throughput.get("cpu"), entry.throughput_source.get("cpu", "")
    if not speed or not source:
        return None
    size = re.search(r"(\d+)px", source)
    return speed, int(size[1]) if size else None, source


def _gpu_row(entry: RankingEntry, gpu_name: str) -> tuple[float, str] | None:
    """The entry's GPU-table throughput when the table's GPU is ``gpu_name`` (the file's last
    name part, ``rtx4090``, inside the lower-cased name without spaces)."""
    source = entry.throughput_source.get("gpu", "")
    if "gpu" not in entry.throughput or not source:
        return None
    token = source.partition(":")[0].removesuffix(".csv").rsplit("-", 1)[-1].lower()
    plain = re.sub(r"[^a-z0-9]", "", gpu_name.lower())
    return (entry.throughput["gpu"], source) if token and token in plain else None


def prior_of(entry: RankingEntry, constant: DeviceConstant, size: int | None = None
             ) -> DevicePrior | None:
    """``entry``'s prior on ``constant``'s device at ``size`` pixels (None: the size it was
    evaluated at, else its benchmark row's), or None when no CPU row (on the CPU), GMACs or
    parameter count is published; see the module docstring for the model."""
    size = size or entry.input_size
    where = f"{constant.name}, {constant.threads} threads" if constant.name == "cpu" \
        else constant.name
    measured = (f"measured on this {where} with timm/{REFERENCE} "
                f"({constant.reference_ms:.1f} ms)")
    row = _cpu_row(entry) if constant.name == "cpu" else None
    if row is not None:
        speed, row_size, row_source = row
        scale = constant.reference_ms / (1000.0 / REFERENCE_ROW_IPS)
        pixels = (size / row_size) ** 2 if size and row_size else 1.0
        latency = 1000.0 / speed * scale * pixels
        source = (f"{row_source} ({speed:g} images/s) x {scale:.2f}, this cpu's slowdown "
                  f"{measured}")
    elif entry.gmacs is not None:
        row_size = entry.gmacs_size or size
        gmacs = entry.gmacs * ((size / row_size) ** 2 if size and row_size else 1.0)
        latency = gmacs * constant.ms_per_gmac
        source = (f"{gmacs:.2f} GMACs (timm benchmark row) x {constant.ms_per_gmac:.1f} ms/GMAC "
                  f"{measured}")
    elif entry.params:
        latency = entry.params / 1e6 * constant.ms_per_mparam
        source = (f"{entry.params / 1e6:.1f}M parameters (no GMACs published) x "
                  f"{constant.ms_per_mparam:.2f} ms/M {measured}")
    else:
        return None
    speed = 1000.0 / max(latency, 1e-9)
    gpu = _gpu_row(entry, constant.name) if constant.name != "cpu" else None
    if gpu is not None:
        speed, gpu_source = gpu
        source += f"; throughput from {gpu_source}"
    return DevicePrior(latency, speed, source)


def over_bound(prior: DevicePrior | None, bound_ms: float | None) -> bool:
    """True when ``prior`` is over :data:`MARGIN` times ``bound_ms`` (an unknown prior, or no
    bound, is never over)."""
    return prior is not None and bound_ms is not None and prior.latency_ms > MARGIN * bound_ms


@cache
def _entries(modality: str) -> dict[str, RankingEntry]:
    found: dict[str, RankingEntry] = {}
    for entry in get_ranking_entries(modality):
        found.setdefault(entry.id, entry)
        if entry.id.startswith("timm/") and entry.architecture:  # timm/<arch> without a tag
            found.setdefault(f"timm/{entry.architecture}", entry)
    return found


def find_entry(backbone_id: str, modality: str) -> RankingEntry | None:
    """The ranking entry of ``backbone_id`` (``timm/<architecture>`` finds its tags' row), or
    None when no zoo ranks it; read once per process."""
    return _entries(modality).get(backbone_id)


def prior_for(backbone_id: str, modality: str, device: Any = "cpu", size: int | None = None
              ) -> DevicePrior | None:
    """:func:`prior_of` for a backbone id on ``device`` (None: no ranking entry, no figure)."""
    entry = find_entry(backbone_id, modality)
    return None if entry is None else prior_of(entry, device_constant(device), size)


def label_priors(space, modality: str, device: Any = "cpu") -> dict[str, float]:
    """``{backbone label: prior latency in ms}`` of ``space``'s backbones that have a prior, at
    the space's ``image_size`` when it fixes one."""
    size = space.resolve({}).get("image_size")
    found: dict[str, float] = {}
    for spec in space.backbones:
        prior = prior_for(spec.id, modality, device, int(size) if size else None)
        if prior is not None:
            found[spec.label] = prior.latency_ms
    return found


def study_priors(study, space, modality: str, device: Any = "cpu") -> dict[str, float]:
    """:func:`label_priors`, recorded in ``study`` the first time (``StudyRecord.priors``) so
    that a resume and every worker draw with the same figures; read back when the record
    covers the space's labels."""
    from autotransfer.finetune.records import StudyRecord, set_priors

    labels = {b.label for b in space.backbones}
    recorded = StudyRecord.of(study).priors
    if recorded and labels <= set(recorded.get("labels", {})):
        return {k: v for k, v in recorded["labels"].items() if k in labels}
    found = label_priors(space, modality, device)
    set_priors(study, {"labels": found, "source": describe(device_constant(device))})
    return found


def check_latency_before_load(trial, backbone_id: str, modality: str, device: Any,
                              params: dict[str, Any], rule: Rule, *,
                              runtime: str = "pytorch") -> None:
    """Prune a trial whose backbone's prior latency is over :data:`MARGIN` times the
    ``latency_ms`` bound, before its weights load. Only for ``runtime: pytorch`` (what the
    prior models); a backbone without a prior is left to the measurement after training.

    Raises:
        optuna.TrialPruned: the prior is far over the bound (reason and violation recorded).
    """
    bound = rule.constraints.get("latency_ms")
    if bound is None or runtime != "pytorch":
        return
    size = params.get("image_size")
    prior = prior_for(backbone_id, modality, device, int(size) if size else None)
    if not over_bound(prior, bound):
        return
    import optuna

    from autotransfer.finetune.records import TrialWriter
    from autotransfer.study.selection import violations

    assert prior is not None
    record = TrialWriter(trial)
    record.violations(violations(rule, {"latency_ms": prior.latency_ms}))
    reason = (f"constraint: latency_ms prior {prior.latency_ms:.1f} > {MARGIN:g} x "
              f"{bound:g} ({prior.source}); not started")
    record.pruned(reason)
    raise optuna.TrialPruned(reason)
