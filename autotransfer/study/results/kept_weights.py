"""The weights a search keeps for a weight soup (space key ``soup``), bounded on disk.

A trial keeps predictions, not weights; a soup needs weights. With ``soup`` in the space, a
trial that completes may keep its trained model's ``state_dict`` (adapters merged into the
weights, float32, on the CPU: every ingredient is a plain model of its backbone's shape) as
``OUT/soup/<study>/trial-N.pt`` (``torch.save``; read back with ``weights_only=True``, so
nothing but tensors is unpickled). Its absolute path is the trial's ``kept_weights`` attribute,
so that a worker process, or a later ``autotransfer ensemble`` from another folder, finds it;
``""`` when the trial was not among its group's best when it completed.

**The bound.** Only trials that can be averaged together form a soup: the same backbone id,
weights (pretrained or not) and tuning method, a *group*. At most ``max_ingredients`` files are
kept per group: the best by validation score (the study's metric; an earlier trial first on a
tie). A trial outside its group's best is not written; one that enters it removes the file of
the trial it displaces. Under the study lock, so that workers finishing together agree; what a
race could still leave (one file too many) :func:`tidy` removes at the end of the search, with
the weights of trials that did not complete.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from autotransfer.finetune.records import TrialRecord, TrialWriter, trial_records

#: The folder under the search's ``out`` that holds the kept weights.
FOLDER = "soup"


def group_of(backbone: str | None, pretrained: bool, params: dict[str, Any]
             ) -> tuple[str, bool, str]:
    """The soup group of a trial: ``(backbone id, pretrained, method)``; trials of one group
    share architecture and start, so their weights can be averaged."""
    return str(backbone), bool(pretrained), str(params.get("method", "finetune"))


def record_group(r: TrialRecord) -> tuple[str, bool, str]:
    """:func:`group_of` a trial's record."""
    return group_of(r.backbone, r.pretrained, r.params)


def study_folder(out: str | Path, study_name: str) -> Path:
    """``out/soup/<study>`` (absolute), the study's name made a safe folder name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    return (Path(out) / FOLDER / slug).resolve()


def _ranked(entries: list[tuple[float, int]], maximize: bool) -> list[int]:
    """Trial numbers of ``(score, number)`` entries, best first (an earlier trial on a tie)."""
    sign = -1.0 if maximize else 1.0
    return [n for s, n in sorted(entries, key=lambda e: (sign * e[0], e[1]))]


def _kept(r: TrialRecord) -> bool:
    return bool(r.kept_weights) and Path(str(r.kept_weights)).is_file()


def keep_weights(trial, model, params: dict[str, Any], *, backbone: str, pretrained: bool,
                 score: float, folder: str | Path, max_ingredients: int, maximize: bool = True,
                 lock: Any = None) -> Path | None:
    """Keep a finishing trial's weights when it is among the ``max_ingredients`` best of its
    group, removing the file of the trial it displaces (see the module docstring).

    Call it last in the trial: ``model`` (a :class:`~autotransfer.finetune.trainer.
    TransferModel`) is moved to the CPU in float32 and its adapters are folded in, in place.

    Args:
        trial: the running ``optuna.Trial``.
        params: the trial's hyperparameters (``method`` names its adapters).
        backbone, pretrained: the trial's backbone id and weights.
        score: its validation score of the study's metric.
        folder: where to write (:func:`study_folder`).
        max_ingredients: files kept per group.
        maximize: whether a larger score is better.
        lock: the study lock (``held()``), or None.

    Returns:
        The file written, or None when the trial is not among its group's best.

    Raises:
        OSError: the file cannot be written (a full disk).
    """
    import torch

    from autotransfer.finetune.methods import merge_method

    group = group_of(backbone, pretrained, params)
    with lock.held() if lock is not None else contextlib.nullcontext():
        rivals = [r for r in trial_records(trial.study, ("complete",))
                  if record_group(r) == group and r.value is not None and _kept(r)]
        ranked = _ranked([(score, trial.number), *((float(r.value or 0.0), r.number)
                                                   for r in rivals)], maximize)
        if trial.number not in ranked[:max_ingredients]:
            TrialWriter(trial).kept_weights("")  # considered, not kept (said in the soup)
            return None
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"trial-{trial.number}.pt"
        merged = merge_method(model.cpu().float().eval(), params)
        partial = path.with_suffix(".pt.partial")
        torch.save(merged.state_dict(), partial)
        os.replace(partial, path)  # a reader never sees half a file
        TrialWriter(trial).kept_weights(str(path))
        for r in rivals:
            if r.number not in ranked[:max_ingredients]:
                with contextlib.suppress(OSError):
                    Path(str(r.kept_weights)).unlink()
    return path


def tidy(study, *, max_ingredients: int, maximize: bool = True) -> list[Path]:
    """Remove the kept weights of finished trials that did not complete, and those past the
    best ``max_ingredients`` of their group (a race between workers); running trials' files
    are left alone. Returns the files removed."""
    removed: list[Path] = []
    records = trial_records(study)
    groups: dict[tuple[str, bool, str], list[TrialRecord]] = {}
    for r in records:
        if not _kept(r):
            continue
        if r.state in ("fail", "pruned"):
            removed.append(Path(str(r.kept_weights)))
        elif r.state == "complete" and r.value is not None:
            groups.setdefault(record_group(r), []).append(r)
    for members in groups.values():
        best = set(_ranked([(float(r.value or 0.0), r.number) for r in members],
                           maximize)[:max_ingredients])
        removed += [Path(str(r.kept_weights)) for r in members if r.number not in best]
    for path in removed:
        with contextlib.suppress(OSError):
            path.unlink()
    return removed


def load_weights(path: str | Path) -> dict[str, Any]:
    """A kept ``state_dict`` (tensors only: ``torch.load(weights_only=True)``, on the CPU).

    Raises:
        OSError: the file is missing or unreadable.
        RuntimeError: the file is not such a state (torch's message).
    """
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
