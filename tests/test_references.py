"""Reference trials (autotransfer.study.references): the order they run in (``order``: the
pre-screen's rank, then the measured cost; held defaults), the queue that releases the held
defaults once the probes scored (``queue``), and their share of a time budget (``share``),
the last through real searches of tiny timm models built from a config on a fake clock."""

import time

import optuna
from optuna.trial import TrialState, create_trial

from autotransfer.finetune.records import StudyRecord, set_pending_references
from autotransfer.space.schema import parse_space
from autotransfer.study.budget import backbone_cost, timebudget
from autotransfer.study.references.order import deferred, order_references
from autotransfer.study.references.queue import release_pending
from autotransfer.study.study import search
from test_budget import SPACE, _study, tiny_zoo  # noqa: F401 (fixture)

# --- the order of the references -------------------------------------------------------------

PLANNED = [(kind, {"backbone": b}) for kind in ("linear_probe", "default")
           for b in ("slow", "fast", "best")]
COST = {"slow": 9.0, "fast": 1.0, "best": 5.0}


def test_references_follow_the_prescreen_rank_then_the_cost():
    from autotransfer.study.references.order import order_references

    planned = [(kind, {"backbone": b}) for kind in ("linear_probe", "default")
               for b in ("slow", "fast", "best")]
    prescreen = {"by": "logme", "scores": {"slow": {"logme": 0.5, "seconds": 9.0},
                                           "fast": {"logme": 0.5, "seconds": 1.0},
                                           "best": {"logme": 0.9, "seconds": 5.0}}}
    found = [(k, p["backbone"]) for k, p in order_references(planned, prescreen)]
    assert found == [("linear_probe", "best"), ("linear_probe", "fast"), ("linear_probe", "slow"),
                     ("default", "best"), ("default", "fast"), ("default", "slow")]
    assert order_references(planned, None) == planned  # no pre-screen: the space's order


def test_only_the_linear_probe_escapes_the_rungs():
    from autotransfer.study.references.order import prunable

    assert not prunable("linear_probe")
    assert prunable("default") and prunable(None)


def test_with_a_prescreen_the_references_follow_its_rank_then_the_measured_cost():
    prescreen = {"by": "logme", "scores": {"slow": {"logme": 0.5, "seconds": 1.0},
                                           "fast": {"logme": 0.5, "seconds": 9.0},
                                           "best": {"logme": 0.9, "seconds": 5.0}}}
    found = [(k, p["backbone"]) for k, p in order_references(PLANNED, prescreen, cost=COST)]
    # the measured cost (seconds per epoch) breaks the tie, not the pre-screen's forward pass
    assert found == [("linear_probe", "best"), ("linear_probe", "fast"), ("linear_probe", "slow"),
                     ("default", "best"), ("default", "fast"), ("default", "slow")]
    assert not any(deferred(kind, prescreen) for kind, _ in PLANNED)


def test_without_a_prescreen_probes_go_cheapest_first_and_defaults_by_probe_score():
    found = [(k, p["backbone"]) for k, p in order_references(
        PLANNED, None, cost=COST, probe_scores={"slow": 0.8, "fast": 0.6, "best": 0.8})]
    assert found == [("linear_probe", "fast"), ("linear_probe", "best"), ("linear_probe", "slow"),
                     ("default", "best"), ("default", "slow"), ("default", "fast")]
    assert [deferred(kind, None) for kind, _ in PLANNED] == [False] * 3 + [True] * 3
    # listed: the space's order, nothing held back
    listed = order_references(PLANNED, None, cost=COST, order="listed")
    assert listed == PLANNED and not deferred("default", None, "listed")


def test_held_defaults_are_enqueued_once_the_probes_have_scored_best_first(tmp_path):
    study, _ = _study(tmp_path)
    distribution = optuna.distributions.CategoricalDistribution(["a", "b"])
    set_pending_references(study, [["default", {"backbone": "a"}, 1.0],
                                   ["default", {"backbone": "b"}, 2.0]])
    study.enqueue_trial({"backbone": "a"}, user_attrs={"reference": "linear_probe"})
    assert release_pending(study, None) is False  # a probe is queued: it goes first
    assert len(study.get_trials()) == 1
    running = study.ask()  # the probe runs (on another worker)
    assert release_pending(study, None) is True  # wait for it, do not sample
    study.tell(running, 0.4)
    study.add_trial(create_trial(params={"backbone": "b"}, distributions={"backbone":
                                 distribution}, value=0.9,
                                 user_attrs={"reference": "linear_probe"}))
    assert release_pending(study, room=1) is False
    queued = study.get_trials(states=(TrialState.WAITING,))
    # b's probe scored higher: its default goes first; the room left takes one
    assert [t.system_attrs["fixed_params"]["backbone"] for t in queued] == ["b"]
    assert StudyRecord.of(study).pending_references == []
    assert release_pending(study, None) is False and len(study.get_trials()) == 3


# --- the references' share of a time budget -----------------------------------------------


class Clock:
    """A wall clock that stands still (budget decisions then depend on the costs alone)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class Lines:
    """The console's trial lines (state and reason)."""

    def __init__(self) -> None:
        self.done: list[tuple[int, str, str]] = []

    def trial_started(self, number, backbone, params) -> None:
        pass

    def epoch_done(self, number, result, epochs) -> None:
        pass

    def trial_done(self, number, state, value, reason) -> None:
        self.done.append((number, state, reason))

    def note(self, number, message) -> None:
        pass


def _fake_costs(per_sample):
    def measure(entry, spec, data, params, device, **kwargs):
        seconds = per_sample[spec.id]
        return {"load_seconds": 0.0, "train_sample_seconds": seconds,
                "eval_sample_seconds": seconds, "size": 32.0, "size_key": "image_size",
                "batch_size": 8, "n_train": len(data.train), "n_val": len(data.val)}
    return measure


def test_a_reference_that_cannot_fit_its_share_does_not_start_and_the_floor_holds(
        tiny_zoo, class_folders, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(timebudget, "now", Clock())
    # each backbone: 20 samples x 2.5 s = ~50 s for a reference; the share of a 100 s budget
    # is a third of the 90 s its reserve of 10 s leaves (the clock stands still), while the
    # 90 s leave every trial room under the time budget's own rule
    monkeypatch.setattr(backbone_cost, "measure_cost",
                        _fake_costs({"tiny/a": 2.5, "tiny/b": 2.5}))
    lines = Lines()
    result = search(class_folders, parse_space(SPACE), trials=4, time_budget=100,
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="s", out=tmp_path / "out",
                    history=False, progress=lines)
    trials = result.study.get_trials()
    skipped = [t for t in trials if t.user_attrs.get("not_started")]
    # the floor always starts: both linear probes and the best-ranked default configuration;
    # the second default does not fit the share
    assert [t.user_attrs["reference"] for t in skipped] == ["default"]
    defaults = [t for t in trials if t.user_attrs.get("reference") == "default"]
    assert defaults[0].state == TrialState.COMPLETE and defaults[1] is skipped[0]
    reasons = [reason for _, state, reason in lines.done if reason.startswith("reference share")]
    assert reasons == [skipped[0].user_attrs["prune_reason"]]
    label = skipped[0].params["backbone"]
    assert f"the first fine-tune of {label} not started, it needs ~50s (1 epochs at the measured " \
           "cost) and 30s of the references' share (33% of the budget) are left" in reasons[0]
    ran = [t for t in trials if t.user_attrs.get("reference") and t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["reference"] for t in ran) == ["default", "linear_probe",
                                                               "linear_probe"]
    # the skipped one does not count: four trials ran, three references and one sampled
    assert sum(not t.user_attrs.get("not_started") for t in trials) == 4
    assert result.best["val_score"] >= max(t.value for t in ran)  # the floor


def test_a_share_of_one_lets_every_reference_that_fits_the_budget_start(
        tiny_zoo, class_folders, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(timebudget, "now", Clock())
    monkeypatch.setattr(backbone_cost, "measure_cost",
                        _fake_costs({"tiny/a": 0.001, "tiny/b": 2.5}))
    space = parse_space({**SPACE, "budget": {"reference_share": 1.0}})
    result = search(class_folders, space, trials=4, time_budget=100,
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="s", out=tmp_path / "out",
                    history=False)
    kinds = [t.user_attrs.get("reference") for t in result.study.get_trials()]
    assert kinds == ["default", "linear_probe", "linear_probe", "default"]  # the first first
    assert not any(t.user_attrs.get("not_started") for t in result.study.get_trials())
