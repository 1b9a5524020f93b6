"""Transfer history: every finished trial with its dataset's meta-features, for warm starts.

Two tables live in the study's own database (any SQLAlchemy URL: SQLite, PostgreSQL, ...):

- ``autotransfer_datasets``: one row per study — modality, classes, training samples, class
  imbalance, and statistics of frozen features of a fixed reference backbone per modality
  (k-NN and LogME scores, mean feature vector);
- ``autotransfer_transfers``: one row per completed trial — backbone, every hyperparameter,
  score, epochs, seconds, and the trained model's measured costs (``latency_ms``,
  ``params_count``, ``size_mb`` as columns since migration ``m002_transfer_costs``; every
  registered cost and validation metric as the JSON columns ``costs`` and ``scores`` since
  ``m003_objectives_json``, keyed by objective name, :mod:`autotransfer.space.objectives`).

Warm starts (:mod:`autotransfer.study.warm_start`) find the past datasets nearest to the
current one (same modality, other studies) and enqueue their best configurations that the
current space can express; "best" is what :mod:`autotransfer.study.selection` says under the
current study's rule (:func:`load_transfers`): a past trial over one of its bounds is never
offered, and a multi-objective study gets the past fronts first.
Recording never fails a trial: a database problem is a warning and the search goes on.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from autotransfer.contract.collect import get_registry
from autotransfer.finetune.records import TrialRecord
from autotransfer.space.objectives import get_objective, objectives
from autotransfer.study.selection import Rule, ordered, violations
from autotransfer.study.store.migrations import migrate, migration

# The reference backbone per modality comes from the zoos (the entry field ``reference_for``):
# meta-features are comparable between datasets only when the same network embedded them, with
# the same preprocessing. A mapping here (modality -> (id, options)) overrides the zoos'.
REFERENCE: dict[str, tuple[str, dict[str, Any]]] | None = None
REFERENCE_SAMPLES = 128
# The scalar meta-features compared between datasets (z-scored over the candidates).
SCALARS = ("log_classes", "log_samples", "log_imbalance", "ref_knn", "ref_logme")

_tables = None


def _define(metadata, *, version: int):
    """The datasets and transfers tables on ``metadata``: those of autotransfer 0.1
    (``version`` 1), plus the measured costs' columns (2, migration ``m002_transfer_costs``),
    plus the JSON ``costs`` and ``scores`` (3, ``m003_objectives_json``)."""
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Float,
        ForeignKey,
        Integer,
        String,
        Table,
        Text,
        UniqueConstraint,
    )

    datasets = Table(
        "autotransfer_datasets", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("study", String(512), nullable=False, unique=True),
        Column("source", Text, nullable=False),
        Column("modality", String(16), nullable=False),
        Column("n_classes", Integer, nullable=False),
        Column("n_samples", Integer, nullable=False),
        Column("imbalance", Float, nullable=False),
        Column("meta", Text, nullable=False),  # JSON: every meta-feature
        Column("created", DateTime(timezone=True)),
    )
    extra = [Column(name, kind) for name, kind in
             (("latency_ms", Float), ("params_count", BigInteger), ("size_mb", Float))
             ] if version >= 2 else []
    extra += [Column(name, Text) for name in JSON_COLUMNS] if version >= 3 else []
    transfers = Table(
        "autotransfer_transfers", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dataset_id", Integer, ForeignKey("autotransfer_datasets.id"), nullable=False,
               index=True),
        Column("study", String(512), nullable=False),
        Column("trial", Integer, nullable=False),
        Column("backbone", String(512), nullable=False),  # the space's label
        Column("backbone_id", String(512), nullable=False),
        Column("pretrained", Boolean, nullable=False),
        Column("params", Text, nullable=False),  # JSON: the study's sampled values
        Column("all_params", Text, nullable=False),  # JSON: every hyperparameter
        Column("metric", String(32), nullable=False),
        Column("value", Float, nullable=False),
        Column("test_score", Float),
        Column("epochs", Integer, nullable=False),
        Column("seconds", Float),
        Column("created", DateTime(timezone=True)),
        *extra,
        UniqueConstraint("study", "trial", name="uq_autotransfer_transfers_trial"),
    )
    return datasets, transfers


#: The measured costs a transfer row keeps as columns (migration ``m002_transfer_costs``; by
#: key: ``params_count`` is objective ``params``). Every cost is also in the JSON ``costs``.
COSTS = ("latency_ms", "params_count", "size_mb")
#: JSON columns ``{objective name: value}`` (migration ``m003_objectives_json``).
JSON_COLUMNS = ("costs", "scores")


def tables():
    """The SQLAlchemy ``(metadata, datasets, transfers)`` tables of the current schema (built
    once)."""
    global _tables
    if _tables is None:
        from sqlalchemy import MetaData

        metadata = MetaData()
        _tables = (metadata, *_define(metadata, version=3))
    return _tables


def tables_0_1():
    """The ``(metadata, datasets, transfers)`` tables as autotransfer 0.1 created them (what
    migration ``m001_history_tables`` creates; later migrations change them)."""
    from sqlalchemy import MetaData

    metadata = MetaData()
    return (metadata, *_define(metadata, version=1))


@migration
def m001_history_tables(connection) -> None:
    """The datasets and transfers tables of autotransfer 0.1 (:func:`tables_0_1`, frozen).
    Databases written before migrations were recorded already have them: ``checkfirst``
    keeps them."""
    metadata, _, _ = tables_0_1()
    metadata.create_all(connection, checkfirst=True)


@migration
def m002_transfer_costs(connection) -> None:
    """The trained model's measured costs on each transfer row (:data:`COSTS`; NULL on rows
    recorded before), so that a warm start can apply the current study's constraints and
    objectives to past trials."""
    from sqlalchemy import inspect, text

    _, _, transfers = tables()
    have = {c["name"] for c in inspect(connection).get_columns(transfers.name)}
    for name in COSTS:
        if name not in have:
            kind = transfers.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {transfers.name} ADD COLUMN {name} {kind}"))


@migration
def m003_objectives_json(connection) -> None:
    """Every measured cost and validation metric of a transfer row as JSON
    (:data:`JSON_COLUMNS`, keyed by objective name; NULL on rows recorded before, whose
    costs are the :data:`COSTS` columns), so that a cost or metric registered later is kept
    without a new column."""
    from sqlalchemy import inspect, text

    _, _, transfers = tables()
    have = {c["name"] for c in inspect(connection).get_columns(transfers.name)}
    for name in JSON_COLUMNS:
        if name not in have:
            kind = transfers.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {transfers.name} ADD COLUMN {name} {kind}"))


def ensure_tables(engine) -> None:
    """Bring the history tables in ``engine``'s database to the current schema (created when
    missing; see :mod:`autotransfer.study.store.migrations`)."""
    migrate(engine)


def _now():
    return datetime.now(timezone.utc)


def meta_features(data, *, device="cpu", seed: int = 0) -> dict[str, Any]:
    """The meta-features of ``data``'s training split.

    Counts always; reference-feature statistics when the modality's reference backbone loads
    (``ref_*`` keys; a failure leaves them out with ``ref_error`` saying why).
    """
    labels = np.asarray(data.train.labels)
    counts = np.bincount(labels, minlength=data.n_classes)
    present = counts[counts > 0]
    p = present / present.sum()
    meta: dict[str, Any] = {
        "modality": data.modality,
        "n_classes": int(data.n_classes),
        "n_samples": int(len(labels)),
        "imbalance": float(present.max() / present.min()),
        "class_entropy": float(-(p * np.log(p)).sum() / math.log(max(2, len(present)))),
    }
    meta["log_classes"] = math.log2(meta["n_classes"])
    meta["log_samples"] = math.log2(max(1, meta["n_samples"]))
    meta["log_imbalance"] = math.log2(meta["imbalance"])
    reference = reference_backbone(data.modality)
    if reference is None:
        return meta
    backbone_id, options = reference
    try:
        import torch

        from autotransfer.contract.collect import get_registry
        from autotransfer.space.hyperparameters import defaults
        from autotransfer.study.prescreen import (
            feature_scores,
            frozen_features,
            stratified_sample,
        )

        start = time.perf_counter()
        torch.manual_seed(seed)
        backbone = get_registry().get(backbone_id).load(pretrained=True)
        index = stratified_sample(labels, REFERENCE_SAMPLES, seed)
        params = {**defaults(), **options}
        features, sample_labels = frozen_features(backbone, data, index, params, device=device)
        mean = features.mean(0)
        scores = feature_scores(features, sample_labels)
        meta.update({
            "ref_backbone": backbone_id,
            "ref_knn": scores["knn"],
            "ref_logme": scores["logme"],
            "ref_norm": float(np.linalg.norm(features, axis=1).mean()),
            "ref_mean": [round(float(v), 5) for v in mean],
            "ref_seconds": round(time.perf_counter() - start, 2),
        })
    except Exception as exc:  # meta-features are a help, never a reason to stop a search
        meta["ref_error"] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return meta


def reference_backbone(modality: str) -> tuple[str, dict[str, Any]] | None:
    """``(id, preprocessing options)`` of the backbone that embeds datasets of ``modality`` for
    meta-features: the first entry whose zoo marks it ``reference_for`` that modality."""
    if REFERENCE is not None:
        return REFERENCE.get(modality)

    for entry in get_registry().entries(modality):
        if entry.reference_for == modality:
            return entry.id, dict(entry.reference_options)
    return None


@dataclass
class Recorder:
    """A study callback that records each completed trial (never raising)."""

    engine: Any
    dataset_id: int
    study_name: str
    metric: str
    epochs: int

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        if trial.state != TrialState.COMPLETE:
            return
        try:
            self.record(trial)
        except Exception as exc:
            warnings.warn(f"transfer history: trial {trial.number} not recorded "
                          f"({type(exc).__name__}: {str(exc).strip()[:200]})", stacklevel=1)

    def record(self, trial) -> None:
        from sqlalchemy.exc import IntegrityError

        _, _, transfers = tables()
        record = TrialRecord.from_frozen(trial)
        if not record.feasible:  # over its study's bounds (study.selection): never a best
            return
        sampled = {k: v for k, v in record.sampled.items() if k != "backbone"}
        row = {
            "dataset_id": self.dataset_id, "study": self.study_name, "trial": record.number,
            "backbone": record.label, "backbone_id": record.backbone or record.label,
            "pretrained": record.pretrained,
            "params": json.dumps(sampled), "all_params": json.dumps(record.params),
            "metric": self.metric, "value": float(record.value),
            "test_score": record.test_score,
            "epochs": len(record.epochs) or self.epochs,
            "seconds": record.duration_seconds, "created": _now(),
            **{get_objective(name).key: value for name, value in record.costs.items()
               if get_objective(name).key in COSTS},
            "costs": json.dumps(record.costs), "scores": json.dumps(record.scores),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(transfers.insert().values(**row))
        except IntegrityError:  # already recorded (a resumed or repeated callback)
            pass


def start_recording(study, engine, data, space, *, device="cpu", seed: int = 0) -> Recorder:
    """Register this study's dataset (meta-features computed once) and return its recorder."""
    from sqlalchemy import select

    _, datasets, _ = tables()
    ensure_tables(engine)
    with engine.connect() as connection:
        found = connection.execute(
            select(datasets.c.id).where(datasets.c.study == study.study_name)
        ).scalar()
    if found is None:
        meta = meta_features(data, device=device, seed=seed)
        from sqlalchemy.exc import IntegrityError

        try:
            with engine.begin() as connection:
                found = connection.execute(datasets.insert().values(
                    study=study.study_name, source=str(data.source), modality=data.modality,
                    n_classes=meta["n_classes"], n_samples=meta["n_samples"],
                    imbalance=meta["imbalance"], meta=json.dumps(meta), created=_now(),
                )).inserted_primary_key[0]
        except IntegrityError:  # another worker registered it first
            with engine.connect() as connection:
                found = connection.execute(
                    select(datasets.c.id).where(datasets.c.study == study.study_name)
                ).scalar()
    return Recorder(engine, int(found), study.study_name, space.metric, space.epochs)


def recorder_for(study, engine, space) -> Recorder | None:
    """The recorder of a study whose dataset is already registered (for worker processes)."""
    from sqlalchemy import inspect, select

    try:
        if not inspect(engine).has_table("autotransfer_datasets"):
            return None
        _, datasets, _ = tables()
        with engine.connect() as connection:
            found = connection.execute(
                select(datasets.c.id).where(datasets.c.study == study.study_name)
            ).scalar()
    except Exception as exc:
        warnings.warn(f"transfer history unavailable: {exc}", stacklevel=1)
        return None
    if found is None:
        return None
    return Recorder(engine, int(found), study.study_name, space.metric, space.epochs)


def load_datasets(engine, *, exclude_study: str | None = None) -> list[dict[str, Any]]:
    """Every recorded dataset (id, study, source, meta), but ``exclude_study``'s."""
    from sqlalchemy import inspect, select

    if not inspect(engine).has_table("autotransfer_datasets"):
        return []
    _, datasets, _ = tables()
    query = select(datasets.c.id, datasets.c.study, datasets.c.source, datasets.c.meta)
    if exclude_study is not None:
        query = query.where(datasets.c.study != exclude_study)
    with engine.connect() as connection:
        return [
            {"id": r.id, "study": r.study, "source": r.source, "meta": json.loads(r.meta)}
            for r in connection.execute(query)
        ]


def load_transfers(engine, dataset_id: int, rule=None) -> list[dict[str, Any]]:
    """The completed trials of one recorded dataset, best first by ``rule`` (a
    :class:`autotransfer.study.selection.Rule`, the current study's; None: one maximised
    score and no bounds): :func:`autotransfer.study.selection.ordered` over the rows' scores
    and measured costs. A row over one of the rule's bounds is left out; a row recorded before
    costs were kept (NULL) is not known to exceed one and stays."""
    from sqlalchemy import select

    _, _, transfers = tables()
    query = select(transfers).where(transfers.c.dataset_id == dataset_id)
    with engine.connect() as connection:
        rows = {r.trial: dict(r._mapping) for r in connection.execute(query)}
    for row in rows.values():
        row["params"] = json.loads(row["params"])
        row["all_params"] = json.loads(row["all_params"])
    rule = rule or Rule()
    return [rows[r.number] for r in ordered([_as_record(row, rule) for row in rows.values()],
                                            rule)]


def _as_record(row: dict[str, Any], rule) -> TrialRecord:
    """A transfer row as the completed trial record that :mod:`.selection` reads, its
    violations those of ``rule``'s bounds."""
    costs = row_costs(row)
    measured = {get_objective(name).key: value for name, value in costs.items()}
    return TrialRecord(
        number=row["trial"], state="complete", value=row["value"], score=row["value"],
        label=row["backbone"], sampled=row["params"], epochs_reported=row["epochs"],
        backbone=row["backbone_id"], params=row["all_params"],
        duration_seconds=row["seconds"], costs=costs,
        scores=json.loads(row.get("scores") or "{}"), violations=violations(rule, measured))


def row_costs(row: dict[str, Any]) -> dict[str, float]:
    """``{cost objective name: value}`` of a transfer row: its JSON ``costs``, else (a row
    recorded before ``m003_objectives_json``) its :data:`COSTS` columns; only the costs
    registered in this process."""
    known = {o.name: o for o in objectives("cost")}
    if row.get("costs"):
        return {k: v for k, v in json.loads(row["costs"]).items() if k in known}
    return {o.name: row[o.key] for o in known.values() if row.get(o.key) is not None}


def dataset_meta(engine, study_name: str) -> dict[str, Any] | None:
    """The recorded meta-features of ``study_name``'s dataset."""
    from sqlalchemy import select

    _, datasets, _ = tables()
    with engine.connect() as connection:
        meta = connection.execute(
            select(datasets.c.meta).where(datasets.c.study == study_name)
        ).scalar()
    return None if meta is None else json.loads(meta)
