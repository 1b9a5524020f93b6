"""Transfer history (SQLAlchemy tables in the study's database) and warm starts from it."""

import uuid

import optuna
import pytest
import sqlalchemy

from autotransfer.data import load_data
from autotransfer.demo import export_fashion_mnist
from autotransfer.space.schema import parse_space
from autotransfer.study import warm_start
from autotransfer.study.store import history
from autotransfer.study.store.storage import make_storage
from autotransfer.study.study import search

SPACE = {
    "backbones": ["packaged/mobilenetv2_100",
                  {"id": "packaged/mobilenetv2_100", "pretrained": False}],
    "epochs": 1,
    "pruner": "none",
    "params": {
        "image_size": 32, "batch_size": 64,
        "freeze_fraction": {"type": "float", "low": 0.5, "high": 1.0},
        "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
    },
}


@pytest.mark.slow
def test_warm_start_enqueues_the_best_configuration_of_an_earlier_study(fashion_mnist,
                                                                         tmp_path):
    storage = f"sqlite:///{tmp_path}/history.db"
    space_a = parse_space({**SPACE, "backbones": ["packaged/mobilenetv2_100"]})
    a = search(fashion_mnist, space_a, trials=2, storage=storage, study_name="a",
               out=tmp_path / "a", seed=0, history=True)
    best = a.study.best_trial

    # dataset B: other Fashion-MNIST images; pre-screen to 1 of 2 backbones, then warm start
    other = export_fashion_mnist(tmp_path / "b", per_class=8, seed=1)
    b = search(other, parse_space(SPACE), trials=1, storage=storage, study_name="b",
               out=tmp_path / "b-out", seed=1, warm_start=1, prescreen=1,
               prescreen_by="params", history=True)
    assert b.study.user_attrs["prescreen"]["kept"] == ["packaged/mobilenetv2_100"]
    assert {t.params["backbone"] for t in b.study.trials} == {"packaged/mobilenetv2_100"}
    first = b.study.trials[0]
    assert first.params == best.params  # A's best, every sampled value
    assert first.user_attrs["warm_start"]["study"] == "a"
    assert first.user_attrs["warm_start"]["trial"] == best.number

    engine = sqlalchemy.create_engine(storage)
    _, datasets, transfers = history.tables()
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(transfers)).mappings().all()
        metas = {r.study: r for r in connection.execute(sqlalchemy.select(datasets))}
    completed = {("a", t.number) for t in a.study.trials if t.state.name == "COMPLETE"}
    completed |= {("b", t.number) for t in b.study.trials if t.state.name == "COMPLETE"}
    assert {(r["study"], r["trial"]) for r in rows} == completed
    assert metas["a"].n_classes == 10 and metas["a"].n_samples == 240
    assert history.dataset_meta(engine, "a")["ref_backbone"] == "packaged/mobilenetv2_100"


@pytest.mark.xdist_group("postgres")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_history_tables_on_every_backend(backend, request, tmp_path, fashion_mnist,
                                         monkeypatch):
    """Record trials, then find the nearest past dataset's best configurations that the current
    space can express (on SQLite and PostgreSQL)."""
    monkeypatch.setattr(history, "REFERENCE", {})  # counts only: no backbone to load here
    url = (f"sqlite:///{tmp_path}/h.db" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    storage = make_storage(url)
    engine = storage.engine
    space = parse_space(SPACE)
    data = load_data(fashion_mnist)
    tag = uuid.uuid4().hex[:8]  # the PostgreSQL database is shared by the session's tests

    past = optuna.create_study(study_name=f"past-{tag}", storage=storage, direction="maximize")
    recorder = history.start_recording(past, engine, data, space)
    distributions = {
        "backbone": optuna.distributions.CategoricalDistribution(
            ["packaged/mobilenetv2_100", "timm/resnet18", "x"]),
        "lr": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True),
        "freeze_fraction": optuna.distributions.FloatDistribution(0.0, 1.0),
    }
    for backbone, lr, freeze, value in [
        ("timm/resnet18", 1e-3, 0.6, 0.95),             # not in the current space: skipped
        ("packaged/mobilenetv2_100", 5e-3, 0.7, 0.90),  # the best that fits
        ("packaged/mobilenetv2_100", 0.5, 0.8, 0.80),   # lr outside the space: sampled instead
        ("packaged/mobilenetv2_100", 1e-3, 0.2, 0.70),  # freeze outside the space
    ]:
        trial = optuna.trial.create_trial(
            params={"backbone": backbone, "lr": lr, "freeze_fraction": freeze},
            distributions=distributions, value=value,
            user_attrs={"backbone": backbone, "pretrained": True, "epoch_1": {},
                        "latency_ms": 4.5, "params_count": 2_236_682, "size_mb": 9.08},
        )
        past.add_trial(trial)
        recorder(past, past.trials[-1])
        recorder(past, past.trials[-1])  # recorded once, however often it is called

    now = optuna.create_study(study_name=f"now-{tag}", storage=storage, direction="maximize")
    history.start_recording(now, engine, data, space)
    meta = history.dataset_meta(engine, now.study_name)
    enqueued = warm_start.enqueue_warm_starts(now, engine, meta, space, 3)
    mine = [c for c in enqueued if c.study == past.study_name]
    assert [c.params for c in mine] == [
        {"backbone": "packaged/mobilenetv2_100", "lr": 5e-3, "freeze_fraction": 0.7},
        {"backbone": "packaged/mobilenetv2_100", "freeze_fraction": 0.8},
        {"backbone": "packaged/mobilenetv2_100", "lr": 1e-3},
    ][: len(mine)]
    waiting = now.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == len(enqueued) >= 1
    assert warm_start.enqueue_warm_starts(now, engine, meta, space, 3) == []  # once per study
    own = history.load_datasets(engine, exclude_study=now.study_name)
    assert now.study_name not in {d["study"] for d in own}
    past_id = next(d["id"] for d in own if d["study"] == past.study_name)
    rows = history.load_transfers(engine, past_id)  # the costs came back (migration m002)
    assert {(r["latency_ms"], r["params_count"], r["size_mb"]) for r in rows} == {
        (4.5, 2_236_682, 9.08)}
    assert {history.row_costs(r)["params"] for r in rows} == {2_236_682}  # m003's JSON


def test_a_history_that_cannot_be_written_never_fails_a_trial(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/missing/dir/h.db")
    recorder = history.Recorder(engine, 1, "s", "accuracy", 1)
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    with pytest.warns(UserWarning, match="transfer history: trial 0 not recorded"):
        recorder(study, study.trials[0])


def test_nearest_datasets_come_first():
    base = {"modality": "image", "log_classes": 3.3, "log_samples": 8.0, "log_imbalance": 0.0,
            "ref_knn": 0.7, "ref_logme": 0.1, "ref_backbone": "r", "ref_mean": [1.0, 0.0]}
    near = {**base, "ref_knn": 0.68, "ref_mean": [1.0, 0.1]}
    far = {**base, "log_classes": 1.0, "ref_knn": 0.99, "ref_mean": [0.0, 1.0]}
    audio = {**base, "modality": "audio"}
    d = warm_start.distances(base, [{"meta": far}, {"meta": near}, {"meta": audio}])
    assert d[1] < d[0] and d[2] == float("inf")


def test_the_history_schema_is_versioned_by_named_migrations(tmp_path, monkeypatch):
    from autotransfer.study.store import migrations

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/old.db")
    history.tables_0_1()[0].create_all(engine)  # a database of autotransfer 0.1: no version yet
    assert migrations.schema_version(engine) == 0
    history.ensure_tables(engine)
    assert migrations.applied(engine) == ["m001_history_tables", "m002_transfer_costs",
                                          "m003_objectives_json"]
    columns = {c["name"] for c in sqlalchemy.inspect(engine).get_columns("autotransfer_transfers")}
    assert {"latency_ms", "params_count", "size_mb", "value"} <= columns  # m002 added them
    assert {"costs", "scores"} <= columns  # m003: every objective, as JSON
    fresh = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/new.db")
    history.ensure_tables(fresh)  # a new database: the 0.1 tables, then each migration
    assert migrations.schema_version(fresh) == 3
    ran = []

    def m004_add_a_column(connection):
        ran.append(1)
        connection.execute(sqlalchemy.text(
            "ALTER TABLE autotransfer_transfers ADD COLUMN energy_mj FLOAT"))

    monkeypatch.setattr(migrations, "MIGRATIONS",
                        [*migrations.MIGRATIONS, ("m004_add_a_column", m004_add_a_column)])
    assert migrations.migrate(engine) == ["m004_add_a_column"]
    assert migrations.migrate(engine) == [] and ran == [1]  # once per database
    assert migrations.schema_version(engine) == 4
    columns = {c["name"] for c in sqlalchemy.inspect(engine).get_columns("autotransfer_transfers")}
    assert "energy_mj" in columns and "value" in columns
