"""Checks of a search made before anything heavy loads: the space, its backbone ids and options,
and that a resumed study keeps the space and the classes it was created with."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from autotransfer.contract.collect import get_registry
from autotransfer.data.fingerprint import changes, data_fingerprint
from autotransfer.data.options import DataOptions
from autotransfer.errors import AutotransferError, StorageError
from autotransfer.finetune.records import (
    StudyRecord,
    set_data_fingerprint,
    set_data_options,
    set_study_origin,
    trial_records,
)
from autotransfer.listing import few
from autotransfer.space.budget import BudgetPlan
from autotransfer.space.ensemble import EnsemblePlan
from autotransfer.space.schema import SearchSpace, load_space

__all__ = ["check_backbones", "check_local_weights", "check_space"]


def _space_fingerprint(space: SearchSpace) -> str:
    """The space as sorted JSON; the default sampler (and objectives, budget, latency, recipe)
    is left out, so that studies created before the space had the key keep their fingerprint."""
    data = space.model_dump(mode="json")
    if data.get("sampler") == "tpe":
        del data["sampler"]
    if isinstance(data.get("budget"), dict) and data["budget"].get("patience") is None:
        data["budget"].pop("patience", None)  # a budget key newer than the study
    for key, default in (("max_epochs", None), ("objectives", None), ("constraints", {}),
                         ("pick", None),
                         ("budget", BudgetPlan().model_dump(mode="json", exclude={"patience"})),
                         ("latency", {"runtime": "pytorch", "precision": "fp32"}),
                         ("ensemble", EnsemblePlan().model_dump(mode="json")),
                         ("soup", None),
                         ("recipe", "supervised")):
        if data.get(key) == default:  # spaces from before objectives keep their fingerprint
            data.pop(key, None)
    return json.dumps(data, sort_keys=True)


def check_space(space: str | Path | SearchSpace) -> SearchSpace:
    """The parsed space, with its backbone ids known and their options supported.

    Loads no model library (only the zoos of the space's ids are asked), so that a bad space
    is reported at once.

    Raises:
        SpaceError: the file is missing or invalid.
        BackboneError, AutotransferError: see :func:`check_backbones`.
    """
    space = space if isinstance(space, SearchSpace) else load_space(space)
    check_backbones(space)
    return space


def check_backbones(space: SearchSpace) -> None:
    """Unknown backbone ids and options fail before any trial runs.

    Raises:
        BackboneError: an id no plugin registers.
        AutotransferError: an option the backbone's loader does not take.
    """
    if not isinstance(space.backbones, list):
        return  # a ranked space: its ids are checked once the study expands it (study.ranked)
    registry = get_registry()
    for spec in space.backbones:
        entry = registry.get(spec.id)
        unknown = sorted(set(spec.load_options()) - set(entry.options))
        if unknown:
            raise AutotransferError(
                f"{spec.id}: option {unknown[0]!r} is not supported; "
                f"expected one of: pretrained{''.join(', ' + o for o in entry.options)}"
            )


def check_local_weights(space: SearchSpace) -> None:
    """Load once, before any trial, each candidate that names a local weights file
    (``weights:``), so that a file that does not fit its architecture is refused then, in the
    zoo's one line (the file, what did not match), not as trial 0's failure. Only those
    candidates' model library is imported.

    Raises:
        BackboneError: a weights file cannot be read or does not fit its network.
    """
    if not isinstance(space.backbones, list):
        return  # a ranked space names no weights file (study.ranked)
    registry = get_registry()
    for spec in space.backbones:
        if spec.weights is not None and spec.pretrained:
            entry = registry.get(spec.id)
            entry.load(pretrained=True, **spec.load_options(entry))


def check_same_origin(study, space: SearchSpace, dataset, masked_storage: str) -> None:
    """Record a new study's space and data; a resumed study must have the same space and the
    same classes (two data folders of one name share the default study name), and is named
    in a warning when its data path changed."""
    fingerprint = _space_fingerprint(space)
    record = StudyRecord.of(study)
    if record.space is None:
        set_study_origin(study, fingerprint, str(dataset.source))
        set_data_fingerprint(study, data_fingerprint(dataset))
        return
    if record.space != fingerprint:
        raise StorageError(
            f"study {study.study_name!r} in {masked_storage} was created with another search "
            "space; pass a new study name or the original space file"
        )
    classes = next((t.classes for t in trial_records(study) if t.classes), None)
    if classes is not None and list(classes) != list(dataset.classes):
        raise StorageError(
            f"study {study.study_name!r} in {masked_storage} was created with data "
            f"{record.data} (classes {few(classes, noun='classes')}), not {dataset.source} "
            f"(classes {few(dataset.classes, noun='classes')}); pass a new study name for a new "
            "study, or the original data"
        )
    _check_same_data(study, dataset)
    if record.data is not None and _where(record.data) != _where(dataset.source):
        from autotransfer.data import DataWarning

        warnings.warn(f"resuming study {study.study_name!r}, created with data {record.data}, "
                      f"on {dataset.source} (same classes)", DataWarning, stacklevel=2)


def record_data_options(study, options, dataset) -> None:
    """Record the data options as reading ``dataset`` resolved them (the detected modality,
    the columns read; :meth:`~autotransfer.data.options.DataOptions.resolved`); a resumed
    study whose recorded options differ says so in one warning line (its later trials, and
    ``train``, read the data the new way)."""
    now = options.resolved(dataset)
    stored = StudyRecord.of(study).data_options
    if stored is not None:
        try:
            before = DataOptions.from_yaml(stored, f"study {study.study_name!r}")
        except AutotransferError:
            before = None
        changed = [] if before is None else before.differences(now)
        if changed:
            from autotransfer.data import DataWarning

            warnings.warn(f"resuming study {study.study_name!r}, searched until now with other "
                          f"data options ({'; '.join(changed)}): its earlier trials read the "
                          "data the old way", DataWarning, stacklevel=2)
    set_data_options(study, now.to_yaml())


def _check_same_data(study, dataset) -> None:
    """Warn when a resumed study's data changed since it began (counts or content): its
    trials would be compared across different validation splits."""
    before = StudyRecord.of(study).data_fingerprint
    now = data_fingerprint(dataset)
    if before is None:  # begun before fingerprints were recorded
        set_data_fingerprint(study, now)
        return
    changed = changes(before, now)
    if changed:
        from autotransfer.data import DataWarning

        warnings.warn(f"resuming study {study.study_name!r}, whose data changed since it began "
                      f"({'; '.join(changed)}): its earlier trials were scored on other data, "
                      "so scores are not comparable; pass a new study name to start afresh",
                      DataWarning, stacklevel=3)


def _where(source) -> str:
    return str(source) if "://" in str(source) else str(Path(source).expanduser().resolve())
