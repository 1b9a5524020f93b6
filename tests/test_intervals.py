"""95% intervals of scores and the rule that picks the winner (study.results.intervals)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from autotransfer.study.results.intervals import (
    bootstrap_macro_f1,
    intervals_of,
    pick_best,
    score_ci95,
    tied_with,
    wilson,
)


def test_wilson_matches_the_published_value():
    # Newcombe (1998), Statistics in Medicine 17:857, example 81/263: score interval 0.2553-0.3662
    low, high = wilson(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5)
    assert high == pytest.approx(0.3662, abs=5e-5)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k=5, n=3"):
        wilson(5, 3)


def test_bootstrap_is_seeded_and_brackets_the_score():
    matrix = [[40, 10, 0], [5, 30, 5], [0, 8, 22]]
    first, again = bootstrap_macro_f1(matrix), bootstrap_macro_f1(matrix)
    assert first == again  # fixed seed: the same predictions give the same interval
    from sklearn.metrics import f1_score

    from autotransfer.study.results.intervals import pairs

    true, pred = pairs(matrix)
    point = f1_score(true, pred, average="macro")
    assert first[0] < point < first[1]
    assert bootstrap_macro_f1(matrix, seed=1) != first  # the seed is what makes it repeatable


def test_score_ci95_uses_the_metric():
    matrix = [[45, 5], [15, 35]]
    assert score_ci95(matrix, "accuracy") == [round(v, 4) for v in wilson(80, 100)]
    assert score_ci95(matrix, "macro_f1") != score_ci95(matrix, "accuracy")
    assert score_ci95(None, "accuracy") is None


def _record(number, correct, *, n=100, seconds=10.0, reference=None, test_correct=50):
    return SimpleNamespace(
        number=number, value=correct / n, score=correct / n, reference=reference,
        duration_seconds=seconds, seconds_per_epoch=None, epochs_reported=3,
        confusion={"val": [[correct, 0], [n - correct, 0]],
                   "test": [[test_correct, 0], [100 - test_correct, 0]]},
    )


def test_a_tie_goes_to_the_cheaper_trial():
    top = _record(0, 90, seconds=100.0)
    cheap = _record(1, 89, seconds=20.0)  # one validation example below: tied
    worse = _record(2, 85, seconds=5.0)  # overlapping interval, but not tied
    assert pick_best([top, cheap, worse]).number == 1
    assert pick_best([top, worse]).number == 0
    assert tied_with(top, [top, cheap, worse]) == [1, 2]


def test_the_pick_never_goes_below_the_best_reference():
    top = _record(0, 90, seconds=100.0)
    reference = _record(1, 90, seconds=200.0, reference="default")
    cheap = _record(2, 89, seconds=1.0)
    assert pick_best([top, reference, cheap]).number == 0


def test_the_test_split_never_affects_the_pick():
    records = [_record(i, c, seconds=s, test_correct=t)
               for i, (c, s, t) in enumerate([(90, 50.0, 60), (89, 60.0, 99), (70, 1.0, 100)])]
    flipped = [_record(r.number, round(r.value * 100), seconds=r.duration_seconds,
                       test_correct=100 - t) for r, t in zip(records, (60, 99, 100), strict=True)]
    assert pick_best(records).number == pick_best(flipped).number == 0


def test_intervals_of_a_record():
    found = intervals_of(_record(0, 80), "accuracy")
    assert found["val_score_ci95"] == [round(v, 4) for v in wilson(80, 100)]
    assert found["test_score_ci95"] == [round(v, 4) for v in wilson(50, 100)]


def test_the_paired_gain_of_two_models_on_the_same_examples_has_its_bootstrap_interval():
    import numpy as np

    from autotransfer.study.results.intervals import paired_gain

    labels = np.arange(200) % 4
    wrong = (labels + 1) % 4
    better = np.where(np.arange(200) < 180, labels, wrong)  # 90% right
    worse = np.where(np.arange(200) < 140, labels, wrong)  # 70%, wrong on a superset
    found = paired_gain(np.eye(4)[better], worse, labels, "accuracy")  # probabilities or classes
    assert found["gain"] == pytest.approx(0.2)
    low, high = found["ci95"]
    # paired: only the 40 examples where they differ vary, so the interval is about +-0.056
    # (sqrt(0.2 * 0.8 / 200) * 1.96) around 0.2; two unpaired samples would give +-0.076
    assert 0.13 < low < 0.2 < high < 0.27
    assert paired_gain(worse, worse, labels, "accuracy") == {"gain": 0.0, "ci95": [0.0, 0.0]}
    with pytest.raises(ValueError, match="both models must score the same examples"):
        paired_gain(better[:10], worse, labels, "accuracy")


def test_best_yaml_says_the_search_gain_over_the_best_reference_with_paired_intervals():
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution

    from autotransfer.finetune.predictions import encode
    from autotransfer.finetune.records import TrialRecord
    from autotransfer.study.results.report import search_gain

    labels = np.arange(100) % 2
    probe = np.eye(2)[np.where(np.arange(100) < 60, labels, 1 - labels)]  # 60% right
    pick = np.eye(2)[np.where(np.arange(100) < 90, labels, 1 - labels)]  # 90% right
    study = optuna.create_study(direction="maximize")
    for value, probs, attrs in ((0.6, probe, {"reference": "linear_probe"}), (0.9, pick, {})):
        study.add_trial(optuna.trial.create_trial(
            params={"backbone": "b"}, distributions={"backbone": CategoricalDistribution(["b"])},
            value=value, user_attrs={**attrs, "predictions": encode(
                {"val": (probs, labels), "test": (probs, labels)})}))
    references = {"linear_probe": {"backbone": "b", "val_score": 0.6, "test_score": 0.6,
                                   "trial": 0}}
    best = TrialRecord.from_frozen(study.trials[1])
    gain = search_gain(study, best, references, "accuracy")
    assert gain["reference"] == "linear_probe" and gain["trial"] == 0
    assert gain["val"] == pytest.approx(0.3) and gain["test"] == pytest.approx(0.3)
    assert gain["val_ci95"][0] > 0.15 and gain["test_ci95"][1] < 0.45
    # the pick is the reference itself, or a trial kept no predictions: nothing to say
    assert search_gain(study, TrialRecord.from_frozen(study.trials[0]), references,
                       "accuracy") is None
    assert search_gain(study, best, {}, "accuracy") is None
