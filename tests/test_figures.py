"""Figures and lines that must not overstate (issue #41.7): importances only where they mean
something, scores per backbone with intervals on a 0-1 axis (failed backbones shown), the
search's start-up in best_so_far, the pick rule said where it ranks a lower score first, and
report.md saying when the best cannot be told apart from a reference. Studies are built from
recorded trials (no training): these tests are about what is drawn and said."""

import time
from datetime import timedelta

import matplotlib
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution

from autotransfer.finetune.records import STUDY_RUN_STARTS
from autotransfer.study.results.intervals import tie_note
from autotransfer.study.results.report import _plots, importances, leaderboard, write_report
from autotransfer.study.results.scores import best_so_far

matplotlib.use("Agg")

N = 120  # validation examples (two classes of 60)
DISTS = {"backbone": CategoricalDistribution(["a/one", "b/two", "c/broken"]),
         "lr": FloatDistribution(1e-4, 1e-2, log=True),
         "freeze_fraction": FloatDistribution(0.0, 1.0)}


def _confusion(correct: int) -> list[list[int]]:
    """A two-class validation confusion matrix of ``N`` examples, ``correct`` of them right."""
    wrong = N - correct
    return [[60 - wrong // 2, wrong // 2], [wrong - wrong // 2, 60 - (wrong - wrong // 2)]]


def _add(study, correct, *, backbone="a/one", lr=1e-3, freeze=1.0, reference=None,
         state="complete", seconds=10.0):
    params = {"backbone": backbone, "lr": lr, "freeze_fraction": freeze}
    attrs = {"backbone": backbone, "params": params}
    if reference:
        attrs["reference"] = reference
    if state == "complete":
        attrs["confusion"] = {"val": _confusion(correct)}
        trial = optuna.trial.create_trial(params=params, distributions=DISTS,
                                          value=correct / N, user_attrs=attrs,
                                          intermediate_values={1: correct / N})
    else:
        attrs["fail_reason"] = "RuntimeError: weights file is corrupt"
        trial = optuna.trial.create_trial(params=params, distributions=DISTS,
                                          state=optuna.trial.TrialState.FAIL, user_attrs=attrs)
    if trial.datetime_complete is not None:  # the trial's cost: its duration
        trial.datetime_start = trial.datetime_complete - timedelta(seconds=seconds)
    study.add_trial(trial)


def _study(tmp_path, name="s"):
    return optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path}/f.db",
                               direction="maximize")


def test_no_importances_from_three_identical_probes(tmp_path):
    """The issue's case: three linear probes, only the backbone varied."""
    study = _study(tmp_path)
    for backbone, correct in (("a/one", 80), ("b/two", 81), ("c/broken", 79)):
        _add(study, correct, backbone=backbone, reference="linear_probe")
    found, why = importances(study)
    assert found == {} and "besides the references" in why


def test_no_importances_when_only_one_hyperparameter_varied(tmp_path):
    study = _study(tmp_path)
    for i in range(6):
        _add(study, 70 + i, backbone=["a/one", "b/two"][i % 2])  # lr, freeze fixed
    found, why = importances(study)
    assert found == {} and why.startswith("only backbone varied"), why
    varied = _study(tmp_path, "varied")
    for i in range(6):
        _add(varied, 70 + i, backbone=["a/one", "b/two"][i % 2], lr=10 ** (-4 + i / 3),
             freeze=i / 6)
    found, why = importances(varied)
    assert why is None and set(found) == {"backbone", "lr", "freeze_fraction"}


def test_score_per_backbone_has_intervals_a_0_1_axis_and_the_failed_backbone(tmp_path):
    study = _study(tmp_path)
    _add(study, 90, backbone="a/one")
    _add(study, 92, backbone="b/two")
    _add(study, 0, backbone="c/broken", state="fail")
    rows = leaderboard(study)
    axes = _plots(study, {}, rows, "accuracy")["score_per_backbone"][1]()
    assert axes.get_ylim() == (0.0, 1.0)  # not magnified to 0.74-0.77
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a/one", "b/two", "c/broken"]
    bars = [c for c in axes.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert bars, "no 95% interval drawn"
    segments = bars[0].lines[2][0].get_segments()  # the interval of a/one's trial
    (low, high) = (segments[0][0][1], segments[0][1][1])
    assert low < 90 / N < high and high - low > 0.05
    labels = axes.get_legend_handles_labels()[1]
    assert "failed" in labels and "complete (95% interval)" in labels


def test_best_so_far_counts_from_the_search_start_and_shows_the_start_up(tmp_path):
    study = _study(tmp_path)
    study.set_user_attr(STUDY_RUN_STARTS, [time.time() - 30])  # 30 s before the first trial
    _add(study, 80, seconds=1.0)
    _add(study, 90, lr=1e-2, seconds=1.0)
    seconds, best, startups = best_so_far(study)
    assert seconds[0] >= 29 and best == [80 / N, 90 / N]
    (start, end), = startups
    assert start == 0 and 29 <= end <= seconds[0]
    axes = _plots(study, {}, leaderboard(study), "accuracy")["best_so_far"][1]()
    assert any("start-up" in label for label in axes.get_legend_handles_labels()[1])
    assert axes.get_xlim()[0] == 0


def test_the_pick_rule_is_said_where_a_lower_score_ranks_first(tmp_path):
    study = _study(tmp_path)
    _add(study, 100, seconds=50.0)  # the highest, and the costlier
    _add(study, 99, lr=1e-2, seconds=5.0)  # one example below: tied, cheaper: picked
    rows = leaderboard(study)
    assert [r["trial"] for r in rows] == [1, 0]
    note = tie_note(rows)
    assert note.startswith("trial 1 ranks above trial 0 despite a lower val score (0.8250 < "
                           "0.8333)") and "fewer seconds" in note
    assert tie_note(rows[::-1]) is None  # the highest first: nothing to explain
    write_report(study, tmp_path / "out", metric="accuracy", rows=rows)
    assert f"Note: {note}." in (tmp_path / "out" / "report.md").read_text()


def test_report_says_when_the_best_is_not_distinguishable_from_the_default(tmp_path):
    study = _study(tmp_path)
    _add(study, 100, reference="default")
    _add(study, 101, lr=1e-2)
    references = {"default": {"backbone": "a/one", "val_score": 100 / N, "test_score": None,
                              "trial": 0}}
    best = {"backbone": "a/one", "params": {"lr": 1e-2}, "metric": "accuracy",
            "val_score": 101 / N, "val_score_ci95": [0.77, 0.89], "references": references,
            "source": {"trial": 1}}
    report = write_report(study, tmp_path / "out", metric="accuracy", best=best).read_text()
    assert ("Not distinguishable from the best first fine-tune (trial 0, `a/one`): their 95% "
            "intervals overlap, a gain of 1 of 120 validation examples.") in report
    assert "honest" not in report  # there is no test split


def test_the_console_calls_no_test_score_honest_without_a_test_split():
    from autotransfer.cli.console import _outcome_lines

    lines = _outcome_lines({"val_score": 0.8, "val_score_ci95": [0.7, 0.9]})
    assert "honest" not in lines[0] and "give a test split" in lines[0]
    with_test = _outcome_lines({"val_score": 0.8, "val_score_ci95": [0.7, 0.9],
                                "test_score_ci95": [0.6, 0.8]})
    assert "the test score is the honest one" in with_test[0]
