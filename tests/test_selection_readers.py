"""Every reader of "which trial is best" asks autotransfer.study.selection (issue #25): the
transfer history's order for warm starts, the best reference of each kind, the leaderboard's
first row. Plumbing with real Optuna studies and SQLite; no model is trained here."""

from __future__ import annotations

import optuna
import sqlalchemy

from autotransfer.finetune.records import REFERENCE, TrialWriter
from autotransfer.space.schema import parse_space
from autotransfer.study import selection, warm_start
from autotransfer.study.store import history

BACKBONES = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0"]
SPACE = {"backbones": BACKBONES, "epochs": 1,
         "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}}}


def _past_study(engine, name: str, trials) -> None:
    """A finished study recorded in the transfer history: ``(backbone, lr, score, cost)``."""
    _, datasets, _ = history.tables()
    history.ensure_tables(engine)
    with engine.begin() as connection:
        dataset_id = connection.execute(datasets.insert().values(
            study=name, source="/data/past", modality="image", n_classes=10, n_samples=100,
            imbalance=1.0, meta='{"modality": "image"}')).inserted_primary_key[0]
    study = optuna.create_study(study_name=name, direction="maximize")
    recorder = history.Recorder(engine, dataset_id, name, "accuracy", 1)
    for backbone, lr, score, cost in trials:
        fixed = optuna.trial.create_trial(
            params={"backbone": backbone, "lr": lr},
            distributions={"backbone": optuna.distributions.CategoricalDistribution(BACKBONES),
                           "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
            value=score, user_attrs={"backbone": backbone, **cost})
        study.add_trial(fixed)
        recorder(study, study.trials[-1])


TRIALS = [  # the top score is the slowest; the fastest scores least
    ("packaged/tf_efficientnet_lite0", 1e-3, 0.90, {"latency_ms": 9.0, "params_count": 3_400_000}),
    ("packaged/mobilenetv2_100", 2e-3, 0.80, {"latency_ms": 4.0, "params_count": 2_200_000}),
    ("packaged/mobilenetv2_100", 3e-3, 0.70, {"latency_ms": 3.0, "params_count": 2_200_000}),
    ("packaged/tf_efficientnet_lite0", 4e-3, 0.60, {"latency_ms": 9.5, "params_count": 3_400_000}),
    ("packaged/tf_efficientnet_lite0", 5e-3, 0.85, {"latency_ms": 9.6, "params_count": 3_400_000}),
]


def _offered(engine, space, n):
    """The learning rates of the past configurations a warm start of ``space`` enqueues."""
    return [c.params["lr"] for c in warm_start.warm_start_configs(
        engine, "now", {"modality": "image"}, parse_space(space), n)]


def test_warm_start_never_offers_a_past_trial_over_the_current_bounds(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/h.db")
    _past_study(engine, "past", TRIALS)
    assert _offered(engine, SPACE, 5) == [1e-3, 5e-3, 2e-3, 3e-3, 4e-3]  # the score, highest first
    # a latency bound: the top-scoring (slowest) past trials are never offered
    assert _offered(engine, {**SPACE, "constraints": {"latency_ms": 5.0}}, 5) == [2e-3, 3e-3]
    assert _offered(engine, {**SPACE, "constraints": {"params": 3e6}}, 1) == [2e-3]
    # two objectives: the past front first (ranked by the score), then the next front
    two = {**SPACE, "objectives": ["accuracy", "latency_ms"]}
    assert _offered(engine, two, 5) == [1e-3, 2e-3, 3e-3, 5e-3, 4e-3]
    assert _offered(engine, {**two, "pick": "latency_ms"}, 2) == [3e-3, 2e-3]
    rows = history.load_transfers(engine, 1)
    assert rows[0]["latency_ms"] == 9.0 and rows[0]["params_count"] == 3_400_000


def test_rows_recorded_before_costs_were_kept_are_not_known_to_exceed_a_bound(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/h.db")
    _past_study(engine, "past", [(b, lr, s, {}) for b, lr, s, _ in TRIALS])
    rule = selection.Rule(constraints={"latency_ms": 5.0})
    assert [r["value"] for r in history.load_transfers(engine, 1, rule)] == [
        0.9, 0.85, 0.8, 0.7, 0.6]


def test_ordered_is_the_pick_then_successive_fronts():
    rule = selection.Rule(objectives=("score", "latency_ms"), constraints={"size_mb": 10.0})
    study = optuna.create_study(directions=rule.directions)
    for values, cost in (((0.9, 8.0), {"latency_ms": 8.0, "size_mb": 9}),
                         ((0.5, 9.0), {"latency_ms": 9.0, "size_mb": 9}),
                         ((0.8, 3.0), {"latency_ms": 3.0, "size_mb": 9}),
                         ((0.99, 1.0), {"latency_ms": 1.0, "size_mb": 50}),  # infeasible
                         ((0.7, 5.0), {"latency_ms": 5.0, "size_mb": 9})):
        trial = study.ask()
        TrialWriter(trial).measured(cost, 0.0)
        TrialWriter(trial).violations(selection.violations(rule, cost))
        study.tell(trial, values)
    from autotransfer.finetune.records import trial_records

    found = [r.number for r in selection.ordered(trial_records(study, ("complete",)), rule)]
    assert found == [0, 2, 4, 1]  # front {0, 2}, then {4}, then {1}; 3 never


def test_the_best_reference_of_a_kind_is_never_an_infeasible_one():
    from autotransfer.study.references.trials import best_references

    space = parse_space({**SPACE, "constraints": {"latency_ms": 5.0}})
    study = optuna.create_study(direction="maximize")
    selection.start_selection(study, space)
    for score, latency in ((0.9, 8.0), (0.6, 4.0), (0.5, 3.0)):
        trial = study.ask({"backbone": optuna.distributions.CategoricalDistribution(BACKBONES)})
        trial.set_user_attr(REFERENCE, "linear_probe")
        TrialWriter(trial).measured({"latency_ms": latency}, 0.0)
        TrialWriter(trial).violations(selection.violations(selection.rule_of(study),
                                                           {"latency_ms": latency}))
        study.tell(trial, score)
    assert best_references(study)["linear_probe"]["trial"] == 1


def test_the_leaderboards_first_row_is_the_pick():
    from autotransfer.study.results.report import leaderboard

    space = parse_space({**SPACE, "objectives": ["accuracy", "latency_ms"],
                         "pick": "latency_ms", "constraints": {"size_mb": 10.0}})
    study = optuna.create_study(directions=selection.Rule.of_space(space).directions)
    selection.start_selection(study, space)
    for values, size in (((0.9, 8.0), 9), ((0.8, 3.0), 9), ((0.99, 1.0), 50), ((0.7, 5.0), 9)):
        trial = study.ask()
        cost = {"latency_ms": values[1], "size_mb": size}
        TrialWriter(trial).measured(cost, 0.0)
        TrialWriter(trial).violations(selection.violations(selection.rule_of(study), cost))
        study.tell(trial, values)
    rows = leaderboard(study)
    # the front {0, 1} ranked by latency, then the dominated 3, then the infeasible 2
    assert [r["trial"] for r in rows] == [1, 0, 3, 2]
    assert rows[0]["trial"] == selection.best_trial(study).number
