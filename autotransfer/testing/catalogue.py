"""Conformance checks for a zoo's lazy catalogue and its start-up cost (``autotransfer.testing``).

Import them from ``autotransfer.testing``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import get_registry, reset_registry

#: Libraries that loading a plugin and building the registry must not import.
HEAVY_MODULES = ("torch", "timm", "transformers", "torchvision", "tensorflow", "jax")


def check_catalogue(zoo: str, *, sample: int = 3) -> list[BackboneEntry]:
    """Check the lazy catalogue(s) that the loaded plugins register for ``zoo``.

    Checks: building the registry lists no catalogue of ``zoo``; its listing gives
    ``BackboneEntry`` objects under ``zoo/`` with unique ids and declared modalities; its
    ``lookup`` (when it has one) finds ``sample`` listed ids as the listing has them and
    answers None for an id that the zoo does not serve.

    Returns:
        The zoo's listed entries.

    Raises:
        ConformanceError: naming the zoo and the check that failed.
    """
    from autotransfer.testing.conformance import ConformanceError

    def fail(check: str, detail: str) -> None:
        raise ConformanceError(f"catalogue {zoo!r}: {check}: {detail}")

    reset_registry()
    registry = get_registry()
    catalogues = registry.catalogues(zoo)
    if not catalogues:
        fail("registered", "no loaded plugin registers a BackboneCatalogue for this zoo")
    if zoo in registry.listed:
        fail("lazy", "building the registry listed it (an entry of this zoo registered "
                     "eagerly by a later plugin forces that)")
    entries: list[BackboneEntry] = []
    for catalogue in catalogues:
        listed = list(catalogue.entries())
        for entry in listed:
            if not isinstance(entry, BackboneEntry):
                fail("entries", f"gave {type(entry).__name__}, expected BackboneEntry")
            if entry.zoo != zoo or entry.modality not in catalogue.modalities:
                fail("entries", f"gave {entry.id!r} ({entry.modality}), outside {zoo}/ "
                                f"{catalogue.modalities}")
        ids = [e.id for e in listed]
        if len(set(ids)) != len(ids):
            fail("entries", f"lists {len(ids) - len(set(ids))} id(s) twice")
        if catalogue.lookup is not None:
            for entry in listed[:: max(1, len(listed) // sample)][:sample]:
                found = catalogue.lookup(entry.id)
                if found is None or (found.id, found.modality) != (entry.id, entry.modality):
                    fail("lookup", f"lookup({entry.id!r}) gave {found!r}, the listing has it")
            missing = f"{zoo}/no-such-backbone-{os.getpid()}"
            if catalogue.lookup(missing) is not None:
                fail("lookup", f"lookup({missing!r}) should be None")
        entries += listed
    return entries


def check_plugin_is_light(plugin: str, *, zoo: str | None = None) -> None:
    """Check that loading ``plugin`` alone and building the registry imports no model library.

    Runs a fresh interpreter with ``AUTOTRANSFER_LOAD_PLUGINS=plugin`` that loads it, builds
    the registry and, with ``zoo``, lists ``autotransfer backbones zoo/``'s entries.

    Raises:
        ConformanceError: naming the modules it imported (``HEAVY_MODULES``).
    """
    from autotransfer.testing.conformance import ConformanceError

    code = (
        "import json, sys\n"
        "from autotransfer.contract.collect import get_registry\n"
        "from autotransfer.contract.manager import plugin_errors\n"
        f"registry = get_registry(); zoo = {zoo!r}\n"
        "if zoo: registry.entries(zoo=zoo)\n"
        f"print(json.dumps([[m for m in {HEAVY_MODULES!r} if m in sys.modules], "
        "plugin_errors()]))\n"
    )
    env = {**os.environ, "AUTOTRANSFER_LOAD_PLUGINS": plugin}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise ConformanceError(f"plugin {plugin!r}: could not load: {out.stderr.strip()}")
    heavy, errors = json.loads(out.stdout.strip().splitlines()[-1])
    if errors:
        raise ConformanceError(f"plugin {plugin!r}: {errors}")
    if heavy:
        raise ConformanceError(
            f"plugin {plugin!r}: loading it and building the registry imported "
            f"{', '.join(heavy)}; import model libraries inside loaders and catalogue listings"
        )


def check_ranking(zoo: str, modality: str, *, sample: int = 3) -> list:
    """Check the ranking metadata that ``zoo`` offers for ``modality`` (``register_ranking``).

    Checks: at least one entry; every entry is a ``RankingEntry`` of ``modality`` under
    ``zoo/`` with unique ids, a finite score, a named signal and source, a positive
    parameter count (or None), and a positive throughput with its source row for each device;
    ``sample`` of its ids (and every one marked ``loads_offline``) resolve in the registry.

    Returns:
        The zoo's ranking entries.

    Raises:
        ConformanceError: naming the zoo, the id and the check that failed.
    """
    import math

    from autotransfer.contract.collect import get_ranking_entries
    from autotransfer.contract.ranking import DEVICES, RankingEntry
    from autotransfer.testing.conformance import ConformanceError

    def fail(what: str, check: str, detail: str) -> None:
        raise ConformanceError(f"ranking {what}: {check}: {detail}")

    entries = [e for e in get_ranking_entries(modality) if e.id.startswith(f"{zoo}/")]
    if not entries:
        fail(zoo, "registered", f"no ranking entry of {modality} under {zoo}/")
    if len({e.id for e in entries}) != len(entries):
        fail(zoo, "ids", "an id is registered twice")
    for e in entries:
        if not isinstance(e, RankingEntry) or e.modality != modality:
            fail(e.id, "entry", f"expected a RankingEntry of {modality}")
        if not (isinstance(e.score, int | float) and math.isfinite(e.score)):
            fail(e.id, "score", f"expected a finite number, got {e.score!r}")
        if not e.signal or not e.source:
            fail(e.id, "source", "signal and source must name the score and where it is from")
        if e.params is not None and e.params <= 0:
            fail(e.id, "params", f"expected a positive count or None, got {e.params!r}")
        for device, speed in e.throughput.items():
            if device not in DEVICES or not speed > 0 or not e.throughput_source.get(device):
                fail(e.id, "throughput", f"{device}: {speed!r} needs a device in {DEVICES}, a "
                                         f"positive images/s and its throughput_source row")
    registry = get_registry()
    step = max(1, len(entries) // sample)
    for e in entries[::step][:sample] + [e for e in entries if e.loads_offline]:
        try:
            registry.get(e.id)
        except Exception as exc:  # noqa: BLE001 - any failure to resolve is the finding
            fail(e.id, "resolves", f"the registry does not serve it ({exc})")
    return entries
