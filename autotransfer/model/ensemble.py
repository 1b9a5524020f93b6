"""The ensemble of a search's trials as a model folder: refit each member, export, predict.

``best.yaml``'s ``ensemble`` section (:mod:`autotransfer.study.results.ensemble`: Caruana et
al. 2004's ensemble selection over the trials' kept probabilities) names the members and their
weights. :func:`train_ensemble` refits each member from its recorded configuration exactly as
:func:`autotransfer.model.refit.train` refits one trial (``trial=N``: its backbone,
hyperparameters and seed, the same data and ``refit_on``), and writes an ensemble folder:

- one sub-folder per member, ``trial-N/``, in its zoo's own format (what ``train`` writes; the
  zoo's library loads each one alone);
- the single pick's folder too, so that the ensemble and the model it is compared with come
  from one refit: a pick that is a member is trained once (it is both);
- ``ensemble.json`` (:data:`MANIFEST`): the members (trial, folder, weight, backbone), the
  classes and modality, the pick's folder, and the refit ensemble's test scores beside each
  member's and the pick's, when the data has a test split.

``autotransfer predict`` on such a folder averages the members' class probabilities with the
weights (:func:`autotransfer.model.predict.predict_ensemble`: each member predicted alone, with
the training preprocessing of its own backbone), as the selection averaged them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.errors import AutotransferError, OptionError, first_line

#: The manifest of an ensemble folder.
MANIFEST = "ensemble.json"
FORMAT = "autotransfer-ensemble"
FORMAT_VERSION = 1


class EnsembleDirError(AutotransferError):
    """An ensemble folder is missing, incomplete or not written by ``train --ensemble``."""


@dataclass
class EnsembleOutcome:
    """What :func:`train_ensemble` produced.

    Attributes:
        out: the ensemble folder (``ensemble.json`` and one folder per member).
        members: trial number -> that member's :class:`~autotransfer.model.refit.TrainOutcome`
            (the pick's too).
        weights: trial number -> weight (summing to 1), heaviest first.
        pick: the single pick's trial number.
        test: ``{metric: value}`` of the weighted ensemble on the test split (None without
            one).
        trained: how many models were trained (members plus the pick when it is not one).
    """

    out: Path
    members: dict[int, Any]
    weights: dict[int, float]
    pick: int
    metric: str
    test: dict[str, float] | None
    trained: int
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


def is_ensemble_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an ensemble manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """``ensemble.json`` of an ensemble folder, checked: its members' folders exist.

    Raises:
        EnsembleDirError: no manifest, an unreadable one, a newer format version, or a member
            folder missing.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EnsembleDirError(f"{directory}: no {MANIFEST}; expected a folder written by "
                               "autotransfer train --ensemble") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnsembleDirError(f"{path}: unreadable ({first_line(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EnsembleDirError(f"{path}: not an autotransfer ensemble manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise EnsembleDirError(f"{path}: format version {manifest['format_version']} is newer "
                               f"than this autotransfer reads ({FORMAT_VERSION}); upgrade")
    members = manifest.get("members")
    if not isinstance(members, list) or not members:
        raise EnsembleDirError(f"{path}: members must be a non-empty list of "
                               "{trial, path, weight}")
    for number, member in enumerate(members):
        if not isinstance(member, dict) or not {"path", "weight"} <= set(member):
            raise EnsembleDirError(f"{path}: members[{number}] must have path and weight")
        if not (directory / member["path"]).is_dir():
            raise EnsembleDirError(f"{path}: members[{number}]: no folder "
                                   f"{directory / member['path']}")
    return manifest


def train_ensemble(best: Any, *, out: str | Path,
                   on_member: Callable[[int, int], None] | None = None,
                   **options: Any) -> EnsembleOutcome:
    """Refit every member of ``best.yaml``'s ensemble, and the single pick, into ``out``.

    Args:
        best: a ``best.yaml`` path (or its parsed mapping) with an ``ensemble`` section.
        out: the ensemble folder to write (see the module docstring).
        on_member: called with ``(trial number, position)`` before each model trains.
        **options: :func:`autotransfer.model.refit.train`'s (``data``, ``refit_on``, ``epochs``,
            ``device``, ``export``, ``on_epoch``, the data options...), the same for every
            member; ``seed`` and ``trial`` are each member's own.

    Returns:
        An :class:`EnsembleOutcome`.

    Raises:
        OptionError: ``trial`` or ``seed`` given (each member has its own), or ``out`` cannot
            be written.
        SpaceError: ``best`` has no ensemble with members (a search with ``ensemble: false``,
            or one from before ensembles), or its hyperparameters are invalid.
        DataError, BackboneError: as :func:`autotransfer.model.refit.train`.

    Example:
        >>> import autotransfer.model.ensemble as ens
        >>> outcome = ens.train_ensemble("runs/ens/best.yaml", out="ens-model")  # doctest: +SKIP
        >>> outcome.test["accuracy"]  # doctest: +SKIP
    """
    import numpy as np

    from autotransfer.errors import SpaceError
    from autotransfer.model.refit import read_best, train
    from autotransfer.outputs import check_out_dir
    from autotransfer.space.objectives import classification_scores

    for name in ("trial", "seed"):
        if options.get(name) is not None:
            raise OptionError(name, " cannot be given with ensemble: each member is refit "
                                    "with its own trial's")
        options.pop(name, None)
    config = read_best(best)
    where = str(best) if not isinstance(best, dict) else "<best configuration>"
    section = config.ensemble
    if section is None or not section.members:
        note = (section.model_extra or {}).get("note") if section is not None else None
        raise SpaceError(f"{where}: no ensemble with members"
                         + (f" ({note})" if note else " (ensemble:)")
                         + "; expected the best.yaml of a search with ensemble on "
                           "(or run autotransfer ensemble STUDY --out its folder)")
    if section.kind != "ensemble":
        raise SpaceError(f"{where}: ensemble.kind is {section.kind!r}; only an ensemble "
                         "(averaged probabilities) is refit here")
    pick = int(config.source.trial) if config.source.trial is not None else None
    weights = {m.trial: float((m.model_extra or {}).get("weight", 0.0))
               for m in section.members}
    total = sum(weights.values())
    if total <= 0:
        raise SpaceError(f"{where}: ensemble.members' weights must sum to more than 0")
    weights = {t: w / total for t, w in weights.items()}
    out = Path(out)
    check_out_dir(out)
    order = [*weights, *([pick] if pick is not None and pick not in weights else [])]
    outcomes: dict[int, Any] = {}
    for position, trial in enumerate(order):
        if on_member is not None:
            on_member(trial, position)
        outcomes[trial] = train(best, out=out / f"trial-{trial}", trial=trial, **options)
    first = outcomes[order[0]]
    test = None
    if all("test" in o.probabilities for o in outcomes.values()):
        labels = first.probabilities["test"][1]
        averaged = sum(w * outcomes[t].probabilities["test"][0].astype(np.float64)
                       for t, w in weights.items())
        test = classification_scores(labels, np.asarray(averaged).argmax(-1), first.metric)
    meta = json.loads((first.model_dir / "autotransfer.json").read_text(encoding="utf-8"))
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "modality": meta["modality"], "classes": meta["classes"], "metric": first.metric,
        "refit_on": first.refit_on, "epochs": first.epochs,
        "members": [{"trial": t, "path": f"trial-{t}", "weight": round(w, 6),
                     "backbone": meta_backbone(outcomes[t].model_dir), **_scored(outcomes[t])}
                    for t, w in weights.items()],
        "pick": None if pick is None else {"trial": pick, "path": f"trial-{pick}",
                                           "member": pick in weights,
                                           **_scored(outcomes[pick])},
        "search": {k: v for k, v in (section.model_extra or {}).items()
                   if k in ("val_score", "val_score_ci95", "test_score", "test_score_ci95",
                            "single_val_score", "note")},
    }
    if test is not None:
        manifest["test"] = test
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=float) + "\n",
                                encoding="utf-8")
    return EnsembleOutcome(out=out, members=outcomes, weights=weights,
                           pick=pick if pick is not None else order[0], metric=first.metric,
                           test=test, trained=len(outcomes), manifest=manifest)


def meta_backbone(model_dir: Path) -> Any:
    """The backbone recorded in a model folder's ``autotransfer.json``."""
    return json.loads((model_dir / "autotransfer.json").read_text(encoding="utf-8"))["backbone"]


def _scored(outcome: Any) -> dict[str, Any]:
    return {"test": outcome.test} if outcome.test is not None else {}
