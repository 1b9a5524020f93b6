"""The greedy weight soup of a study's own trials: ``best.yaml``'s ``soup`` section, built from
the weights the trials kept (space key ``soup``; :mod:`.kept_weights`), without training.

Wortsman et al., 2022, "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time" (ICML, arXiv 2203.05482), the *greedy soup*: in
validation order, start from the best model and add each next one to the uniform average of
the weights only if the validation score of the average does not drop. Here the ingredients
are the completed trials of the pick's group (its backbone id, weights and tuning method: the
same architecture and start; adapters were merged when the weights were kept) whose weights
were kept, the pick first, then by their search validation score. Every other completed trial
is named with the reason it is not an ingredient. Each candidate soup costs at most one forward
pass over the validation split (only the rows a score asks for, each set of trials once; a
single trial's probabilities are those it kept), the final soup one more over the test split:
seconds, against the minutes the trials trained.

What is reported, and why it is honest (the same procedure as the ensemble's,
:mod:`.ensemble`):

- ``val_score``: **cross-fitted**: on each of two fixed halves of the validation split
  (stratified by class, seed :data:`~autotransfer.finetune.ensemble.HALVES_SEED`) the
  ingredients are ranked by their own score on that half, the greedy soup is chosen on that
  half, and it predicts the other half; every example is predicted by a soup whose choice did
  not see it. ``single_val_score``: the same procedure with one ingredient (the best on one
  half predicts the other), so ``val_gain`` is what averaging adds over choosing one of the
  same weights. ``val_score_in_sample``: the final soup (chosen on the whole split, from the
  pick) on that split: optimistic, shown, never compared.
- ``test_score``: the final soup on the test split, scored once, beside ``single.test_score``,
  the pick's; both with 95% intervals (:mod:`.intervals`).
- the costs are one model's: the pick's measured ``latency_ms`` (and size, parameters), since
  the soup has the pick's architecture; ``latency`` says so.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.finetune import ensemble as halving
from autotransfer.finetune.records import StudyRecord, TrialRecord, trial_records
from autotransfer.space.objectives import get_objective
from autotransfer.study.results.ensemble import (
    combined_costs,
    combined_line,
    combined_row,
    front_point,
    single_section,
)
from autotransfer.study.results.intervals import score_ci95
from autotransfer.study.results.kept_weights import load_weights, record_group
from autotransfer.study.results.scores import confusion
from autotransfer.study.selection import best_trial

METHOD = "Wortsman et al. 2022 greedy soup over the trials' kept weights"
LATENCY = ("one model's: the pick's measured latency_ms (the soup has the pick's "
           "architecture)")


def _not_built(why: str, left_out: dict[int, str] | None = None) -> dict[str, Any]:
    return {"kind": "soup", "members": [], "note": f"not built: {why}",
            "left_out": _listed(left_out or {})}


def _listed(left_out: dict[int, str]) -> list[dict[str, Any]]:
    """``left_out`` as best.yaml lists it: ``[{trial, why}]`` by trial number."""
    return [{"trial": n, "why": why} for n, why in sorted(left_out.items())]


def ingredients(study, pick: TrialRecord, *, max_ingredients: int, maximize: bool = True
                ) -> tuple[list[TrialRecord], dict[int, str]]:
    """The completed trials that can be averaged with ``pick`` and kept their weights, the
    pick first, then by validation score (at most ``max_ingredients``), and ``{trial: why
    not}`` for every other completed trial (one line each)."""
    group = record_group(pick)
    found: list[TrialRecord] = []
    left_out: dict[int, str] = {}
    for r in trial_records(study, ("complete",)):
        if r.number == pick.number:
            continue
        mine = record_group(r)
        if mine[:2] != group[:2]:
            left_out[r.number] = (f"backbone {r.backbone}" + ("" if r.pretrained else
                                                              " (random weights)")
                                  + f", not the pick's {pick.backbone}: another architecture "
                                    "or start")
        elif mine[2] != group[2]:
            left_out[r.number] = f"method {mine[2]}, not the pick's {group[2]}"
        elif r.kept_weights == "":
            left_out[r.number] = ("weights not kept: not among the best max_ingredients of "
                                  "its group when it completed")
        elif not r.kept_weights:
            left_out[r.number] = "weights not kept (the space had no soup key when it ran)"
        elif not Path(r.kept_weights).is_file():
            left_out[r.number] = ("weights not kept: removed for better trials of its group "
                                  "(max_ingredients), or moved")
        else:
            found.append(r)
    sign = -1.0 if maximize else 1.0
    found.sort(key=lambda r: (sign * float(r.value or 0.0), r.number))
    for r in found[max_ingredients - 1:]:
        left_out[r.number] = f"past max_ingredients={max_ingredients}"
    return [pick, *found[:max_ingredients - 1]], dict(sorted(left_out.items()))


class _Soups:
    """The pick's model with each set of ingredients averaged in, and its class probabilities
    on the rows of a split that a score asks for: each row of a set computed once (a half of
    the validation split costs half a pass), a single trial's read from the probabilities it
    kept (its own weights, scored by its trial: no pass). Run as the trials ran: bf16 autocast
    on a GPU, channels-last for a CNN."""

    def __init__(self, model, preprocess, states: dict[int, dict], data, device, *,
                 channels_last: bool = False,
                 kept: dict[int, dict[str, np.ndarray]] | None = None) -> None:
        import torch

        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device).to(memory_format=self.format).eval()
        self.preprocess, self.states, self.data, self.device = preprocess, states, data, device
        self.autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
        self.kept = kept or {}
        self.cache: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = {}
        self.inputs: dict[str, Any] = {}
        self.rows = 0  # rows computed by forward passes, all sets and splits
        self.loaded: tuple[int, ...] | None = None

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self._encoded(split)[1])

    def _encoded(self, split: str):
        if split not in self.inputs:
            self.inputs[split] = self.preprocess.encode(self.data, split)
        return self.inputs[split]

    def probabilities(self, trials: tuple[int, ...], split: str = "val",
                      rows: np.ndarray | None = None) -> np.ndarray:
        """``(len(rows), C)`` class probabilities of the uniform soup of ``trials`` on
        ``split``'s ``rows`` (None: every row)."""
        import torch

        from autotransfer.data.batching import take
        from autotransfer.finetune.averaging import load_average

        key = tuple(sorted(trials))
        x, y = self._encoded(split)
        rows = np.arange(len(y)) if rows is None else np.asarray(rows)
        if len(key) == 1 and split in self.kept.get(key[0], {}):
            return self.kept[key[0]][split][rows]
        probs, done = self.cache.get((split, key), (np.zeros((len(y), 0)), np.zeros(len(y),
                                                                                  bool)))
        missing = rows[~done[rows]]
        if len(missing):
            if self.loaded != key:
                load_average(self.model, [self.states[n] for n in key])
                self.loaded = key
            size = 256 if self.device.type == "cuda" else 32
            found = []
            with torch.inference_mode():
                for start in range(0, len(missing), size):
                    batch = take(x, torch.as_tensor(missing[start:start + size]))
                    inputs = self.preprocess.to_input(batch, device=self.device)
                    if isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
                        inputs = inputs.contiguous(memory_format=self.format)
                    with self.autocast:
                        logits = self.model(inputs)
                    found.append(logits.float().softmax(-1).cpu().numpy())
            computed = np.concatenate(found)
            if probs.shape[1] == 0:
                probs = np.zeros((len(y), computed.shape[1]), dtype=np.float32)
            probs[missing], done[missing] = computed, True
            self.cache[(split, key)] = (probs, done)
            self.rows += len(missing)
        return probs[rows]


def greedy(order: list[int], score) -> tuple[list[int], dict[int, float]]:
    """Wortsman et al.'s greedy soup: start from ``order[0]``, add each next trial if
    ``score(trials)`` of the soup with it does not drop. Returns the soup and each tried
    trial's ``score`` of the soup with it."""
    soup = [order[0]]
    best = score(tuple(soup))
    tried = {order[0]: best}
    for n in order[1:]:
        value = score((*soup, n))
        tried[n] = value
        if value >= best:
            soup, best = [*soup, n], value
    return soup, tried


def build_soup(study, *, metric: str, data, device: Any = "auto", space: Any = None,
               max_ingredients: int = 5, trust_remote_code: bool = False) -> dict[str, Any]:
    """``best.yaml``'s ``soup`` section for ``study`` (see the module docstring).

    Args:
        metric: the study's metric (:mod:`autotransfer.space.objectives`).
        data: the study's :class:`~autotransfer.data.LabelledData`, split as the search split
            it (the validation labels are checked against the pick's kept ones).
        device: a ``torch.device``, or ``auto``, ``cpu``, ``cuda``...
        space: the study's :class:`~autotransfer.space.schema.SearchSpace` (the backbones'
            options and the members' names as it writes them); None: their ids.
        max_ingredients: at most this many trials averaged, the pick included.
        trust_remote_code: let a Hugging Face checkpoint run its own code (as the search did).

    Returns:
        The section: ``kind: soup``, ``members`` (trial, backbone, params, val_score, weight,
        weights: the kept file), ``val_score`` (cross-fitted) and its interval,
        ``val_score_in_sample``, ``single_val_score`` (one ingredient, same procedure),
        ``val_gain``, ``test_score`` and its interval (with a test split), ``single`` (the
        pick: val and test with intervals, its costs), the pick's costs, ``latency``,
        ``tried``, ``left_out`` (``[{trial, why}]``), ``selection`` (how, rows run, seconds),
        ``note`` and, with cost objectives, ``pareto``. Without an ingredient besides the
        pick (or its weights): ``{kind, members: [], note, left_out}``, the note saying why.

    Raises:
        ValueError: ``max_ingredients`` < 1.
        OSError, RuntimeError: a kept file cannot be read.
        BackboneError: the pick's backbone cannot be loaded.
    """
    started = time.perf_counter()
    if max_ingredients < 1:
        raise ValueError(f"max_ingredients must be >= 1, got {max_ingredients=}")
    pick = best_trial(study)
    if pick is None:
        return _not_built("no completed trial within the constraints")
    objective = get_objective(metric)
    maximize = objective.direction == "maximize"
    chosen, left_out = ingredients(study, pick, max_ingredients=max_ingredients,
                                   maximize=maximize)
    if not pick.kept_weights or not Path(pick.kept_weights).is_file():
        return _not_built(f"the pick (trial {pick.number}) kept no weights (the space had no "
                          "soup key when it ran, or the file was removed)", left_out=left_out)
    if len(chosen) < 2:
        return _not_built(f"no other completed trial can be averaged with the pick (trial "
                          f"{pick.number}): {_why_none(left_out)}", left_out=left_out)
    kept = pick.probabilities()
    soups = _soups(pick, chosen, data, device, space, trust_remote_code)
    labels = soups.labels("val")
    if "val" in kept and not np.array_equal(kept["val"][1], labels):
        return _not_built("the validation split read now is not the one the trials were "
                          "scored on (the data changed)", left_out=left_out)
    compute = objective.compute
    assert compute is not None  # a metric has one

    def scorer(rows: np.ndarray):
        def score(trials: tuple[int, ...]) -> float:
            preds = soups.probabilities(trials, rows=rows).argmax(-1)
            return float(compute(labels[rows], preds))
        return score

    numbers = [r.number for r in chosen]
    a, b = halving.halves(labels)
    held = np.empty(len(labels), dtype=np.int64)
    single = np.empty(len(labels), dtype=np.int64)
    halves = []
    for on, other in ((a, b), (b, a)):
        score = scorer(on)
        alone = {n: score((n,)) for n in numbers}
        order = sorted(numbers, key=lambda n: (-alone[n] if maximize else alone[n],
                                               numbers.index(n)))
        soup, _ = greedy(order, score)
        held[other] = soups.probabilities(tuple(soup), rows=other).argmax(-1)
        single[other] = soups.probabilities((order[0],), rows=other).argmax(-1)
        halves.append(soup)
    final, tried = greedy(numbers, scorer(np.arange(len(labels))))
    n_classes = data.n_classes
    val, val_ci = _score(compute, labels, held, metric, n_classes)
    single_val, single_ci = _score(compute, labels, single, metric, n_classes)
    section: dict[str, Any] = {
        "kind": "soup",
        "members": [_member(r, 1.0 / len(final), space) for r in chosen if r.number in final],
        "metric": metric,
        "val_score": val, "val_score_ci95": val_ci,
        "val_score_in_sample": round(tried[final[-1]], 5),  # the soup's, when last added to
        "single_val_score": single_val, "single_val_score_ci95": single_ci,
        "val_gain": round(val - single_val, 5),
    }
    if data.test is not None:
        test_labels = soups.labels("test")
        test, test_ci = _score(compute, test_labels, soups.probabilities(
            tuple(final), "test").argmax(-1), metric, n_classes)
        section.update(test_score=test, test_score_ci95=test_ci)
    section["single"] = single_section(pick, metric)
    section.update(combined_costs([pick]))
    section["latency"] = LATENCY
    section["tried"] = [{"trial": n, "with_soup": round(v, 5)} for n, v in tried.items()]
    section["left_out"] = _listed(left_out)
    section["selection"] = {
        "method": METHOD, "ingredients": len(chosen), "max_ingredients": max_ingredients,
        "cross_fitting": ("two fixed halves of the validation split (stratified by class, seed "
                          f"{halving.HALVES_SEED}): ranked and chosen on one half, scored on "
                          "the other, and the reverse"),
        "halves": [len(a), len(b)], "chosen_on_halves": halves,
        # validation and test rows run through a soup (a single trial's are its kept ones)
        "forward_rows": soups.rows, "seconds": round(time.perf_counter() - started, 3),
    }
    section["note"] = _note(final, pick, section)
    point = front_point(study, section)
    if point is not None:
        section["pareto"] = point
    return section


def _soups(pick: TrialRecord, chosen: list[TrialRecord], data, device, space,
           trust_remote_code: bool) -> _Soups:
    """The pick's model (its backbone, built as its trial built it, without adapters: the
    kept weights have them merged), its preprocessing, and the kept states."""
    from autotransfer.contract.collect import get_registry
    from autotransfer.finetune.device import device_for
    from autotransfer.finetune.trainer import TransferModel
    from autotransfer.space.schema import BackboneSpec

    spec = _spec(pick, space) or BackboneSpec(id=str(pick.backbone), pretrained=pick.pretrained)
    entry = get_registry().get(spec.id)
    backbone = entry.load(pretrained=spec.pretrained,
                          **spec.load_options(entry, trust_remote_code=trust_remote_code))
    preprocess = backbone.configured(pick.params)
    model = TransferModel(backbone, data.n_classes, float(pick.params.get("dropout") or 0.0))
    states = {r.number: load_weights(str(r.kept_weights)) for r in chosen}
    if isinstance(device, str):
        device = device_for(device)
    kept = {}
    for r in chosen:  # what each trial scored with its own weights (labels: the same rows)
        found = r.probabilities()
        kept[r.number] = {split: probs for split, (probs, labels) in found.items()
                          if split in ("val", "test") and getattr(data, split) is not None
                          and np.array_equal(labels, getattr(data, split).labels)}
    return _Soups(model, preprocess, states, data, device,
                  channels_last=bool(backbone.channels_last), kept=kept)


def _spec(r: TrialRecord, space: Any):
    if space is not None and isinstance(space.backbones, list):
        with contextlib.suppress(KeyError, StopIteration):  # a label the space lacks
            return space.backbone(r.sampled["backbone"])
    return None


def _score(compute, labels: np.ndarray, preds: np.ndarray, metric: str, n_classes: int
           ) -> tuple[float, list[float] | None]:
    matrix = confusion(preds, labels, n_classes)
    return round(float(compute(labels, preds)), 5), score_ci95(matrix, metric)


def _member(r: TrialRecord, weight: float, space: Any) -> dict[str, Any]:
    spec = _spec(r, space)
    return {"trial": r.number, "backbone": spec.to_yaml() if spec is not None else r.backbone,
            "params": dict(r.params), "val_score": r.value, "weight": round(weight, 4),
            "weights": r.kept_weights}


def _why_none(left_out: dict[int, str]) -> str:
    """The reasons of the left-out trials, most common first, with their counts."""
    if not left_out:
        return "it is the only completed trial"
    counts: dict[str, int] = {}
    for why in left_out.values():
        short = why.split(":")[0]
        counts[short] = counts.get(short, 0) + 1
    return "; ".join(f"{n} trial{'s' * (n != 1)}: {why}" for why, n in
                     sorted(counts.items(), key=lambda kv: -kv[1]))


def _note(final: list[int], pick: TrialRecord, section: dict[str, Any]) -> str:
    """One sentence on what the soup is worth."""
    if len(final) == 1:
        return "the greedy soup kept only the pick: no soup beyond one model"
    gain = section["val_gain"]
    test = section.get("test_score")
    single_test = section["single"].get("test_score")
    worse_test = (f"; on test it scores below the single pick ({test:.4f} vs "
                  f"{single_test:.4f})" if test is not None and single_test is not None
                  and test < single_test else "")
    if gain <= 0:
        return (f"soup of {len(final)} trials, but not better than one of its ingredients on "
                f"held-out validation ({section['val_score']:.4f} vs "
                f"{section['single_val_score']:.4f}): ship the single model{worse_test}")
    return (f"soup of {len(final)} trials, {gain:+.4f} over one of its ingredients on held-out "
            f"validation, at one model's latency{worse_test}")


def study_data(study, space, pick: TrialRecord | None = None):
    """The data a stored study searched, read and split as it did (its recorded path and data
    options, the space's ``val_fraction``, the trials' seed).

    Raises:
        AutotransferError: the study recorded no data path.
        DataError: the data cannot be read.
    """
    from autotransfer.data import load_data
    from autotransfer.data.options import DataOptions
    from autotransfer.errors import AutotransferError

    record = StudyRecord.of(study)
    if not record.data:
        raise AutotransferError(f"study {study.study_name!r} recorded no data path; the soup "
                                "scores its weights on the search's data")
    options = DataOptions.from_yaml(record.data_options, f"study {study.study_name!r}")
    seed = pick.seed if pick is not None else 0
    return load_data(record.data, val_fraction=float(space.val_fraction), seed=seed,
                     data_options=options)


def soup_line(section: dict[str, Any]) -> str:
    """The console's line for a ``soup`` section."""
    trials = "+".join(str(m["trial"]) for m in section.get("members") or [])
    return combined_line(section, "soup", trials, "one ingredient", "one model")


def soup_row(section: dict[str, Any]) -> dict[str, Any] | None:
    """A leaderboard row for a ``soup`` section (None when none was built): its trial is
    ``"soup"``, its state ``soup``, its val score the held-out one, its costs the pick's."""
    return combined_row(section, "soup", "soup")
