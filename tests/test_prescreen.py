"""Transferability pre-screen: LogME and k-NN on real frozen features, and ``--prescreen K``."""

import json
from pathlib import Path

import numpy as np
import pytest

from autotransfer.space.schema import parse_space
from autotransfer.study.prescreen import (
    keep_top,
    knn_accuracy,
    logme,
    prescreen,
    stratified_sample,
)
from conftest import cli_error

REPO = Path(__file__).resolve().parents[1]


def _evidence(f, y, alpha, beta):
    """Log evidence of Bayesian ridge regression, straight from its definition (per sample)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    return (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.linalg.slogdet(a)[1]
            - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m
            - n / 2 * np.log(2 * np.pi)) / n


@pytest.mark.parametrize("n, d", [(60, 8), (20, 40)])  # the n > D and n <= D branches
def test_logme_is_the_maximum_evidence(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    labels = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)  # two classes
    score = logme(f, labels)
    # LogME averages the classes' maximum evidence: no (alpha, beta) on a grid does better
    grid = [(a, b) for a in np.logspace(-3, 3, 25) for b in np.logspace(-3, 3, 25)]
    best = np.mean([max(_evidence(f, (labels == c).astype(float), a, b) for a, b in grid)
                    for c in (0, 1)])
    assert score == pytest.approx(best, abs=0.02)
    assert score >= best - 1e-3


def test_logme_and_knn_prefer_features_that_separate_the_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    noise = rng.normal(size=(100, 32))
    signal = noise + 6.0 * np.eye(32)[labels]
    assert logme(signal, labels) > logme(noise, labels)
    assert knn_accuracy(signal, labels) > 0.9 > 0.5 > knn_accuracy(noise, labels)


def test_stratified_sample_keeps_every_class():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    index = stratified_sample(labels, 20, seed=0)
    assert set(labels[index]) == {0, 1, 2} and len(index) <= 22
    assert len(stratified_sample(labels, 500)) == 100


def test_prescreen_ranks_pretrained_above_random_weights(fashion_mnist, capsys):
    """Real ImageNet weights transfer to Fashion-MNIST better than the same net at random init:
    both feature scores see it, through the real CLI (--json)."""
    from autotransfer.cli import main

    space = fashion_mnist.parent / "space.yaml"
    space.write_text(
        "backbones:\n"
        "  - {id: packaged/mobilenetv2_100, pretrained: false}\n"
        "  - packaged/mobilenetv2_100\n"
        "epochs: 1\nparams: {image_size: 64}\n"
    )
    main(["prescreen", str(fashion_mnist), "--space", str(space), "--samples", "100", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["backbone"] for r in rows] == [
        "packaged/mobilenetv2_100", "packaged/mobilenetv2_100 (random init)"
    ], rows
    assert all(r["error"] is None and r["samples"] == 100 and r["seconds"] > 0 for r in rows)
    assert rows[0]["scores"]["knn"] > rows[1]["scores"]["knn"]
    assert rows[0]["scores"]["logme"] > rows[1]["scores"]["logme"]


def test_a_backbone_that_fails_is_ranked_last_with_its_reason(fashion_mnist):
    from autotransfer.data import load_data

    space = parse_space({
        "backbones": [{"id": "packaged/mobilenetv2_100", "weights": "/no/such/file.pth",
                       "name": "broken"}, "packaged/mobilenetv2_100"],
        "epochs": 1, "params": {"image_size": 32},
    })
    ranking = prescreen(load_data(fashion_mnist), space, samples=40, by="logme")
    assert ranking[0].error is None
    assert ranking[1].label == "broken" and "'weights'" in ranking[1].error
    _, dropped = keep_top(space, ranking, 1, "logme")
    assert dropped == [(ranking[1].label, ranking[1].error)]


# (a bad --prescreen-by or --by is a click choice: a usage error, see tests/test_bad_input.py)
@pytest.mark.parametrize("args, message", [
    (["search", "--trials", "1", "--prescreen", "0"], "--prescreen must be >= 1, got 0"),
    (["search", "--trials", "1", "--warm-start", "0"], "--warm-start must be >= 1, got 0"),
])
def test_bad_budget_options_are_one_line_errors(capsys, class_folders, args, message):
    space = str(REPO / "search_spaces" / "image-quick.yaml")
    err = cli_error(capsys, args[0], str(class_folders), "--space", space, *args[1:])
    assert message in err
