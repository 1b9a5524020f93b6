"""The weight soup of a search's own trials: the space key, the weights kept and bounded on
disk, the ``soup`` section built after the search and again from the stored study, the
leaderboard row, ``train --soup`` from the kept weights, and a pick nothing can be averaged
with. Tiny models built from a config (tests/test_ensemble.py's zoo)."""

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from autotransfer.cli import main
from autotransfer.errors import SpaceError
from autotransfer.finetune.records import trial_records
from autotransfer.space.schema import parse_space
from autotransfer.study.results.kept_weights import keep_weights, study_folder, tidy
from autotransfer.study.results.soup import build_soup, greedy
from test_ensemble import (  # noqa: F401 (fixtures)
    PARAMS,
    _best_with_ensemble,
    three_splits,
    tiny_zoo,
)
from test_objectives import _measured_study


def test_the_space_s_soup_key():
    base = {"backbones": ["tiny/a"], "epochs": 1}
    assert parse_space(base).soup is None  # off unless asked: kept weights cost disk
    assert parse_space({**base, "soup": True}).soup.max_ingredients == 5
    assert parse_space({**base, "soup": {"max_ingredients": 2}}).soup.max_ingredients == 2
    assert parse_space({**base, "soup": False}).soup is None
    with pytest.raises(SpaceError, match="unknown key 'max_ingredient' in soup"):
        parse_space({**base, "soup": {"max_ingredient": 2}})
    with pytest.raises(SpaceError, match="soup.max_ingredients"):
        parse_space({**base, "soup": {"max_ingredients": 0}})


def test_greedy_adds_an_ingredient_only_when_the_score_does_not_drop():
    scores = {(0,): 0.5, (0, 1): 0.4, (0, 2): 0.5, (0, 2, 3): 0.6}
    soup, tried = greedy([0, 1, 2, 3], lambda trials: scores[tuple(trials)])
    assert soup == [0, 2, 3] and tried == {0: 0.5, 1: 0.4, 2: 0.5, 3: 0.6}


def test_the_soup_is_a_point_of_the_front_at_the_pick_s_costs_beside_the_ensemble():
    from autotransfer.study.results.ensemble import front_point
    from autotransfer.study.results.front_plots import front_plots
    from autotransfer.study.results.report import _front_lines

    study = _measured_study(["accuracy", "size_mb"], [(0.9, {"size_mb": 9.0}),
                                                      (0.8, {"size_mb": 2.0})])
    # a soup of trials 0 and 1: held-out 0.92 at one model's size, the pick's (trial 0)
    soup = {"kind": "soup", "members": [{"trial": 0}, {"trial": 1}], "val_score": 0.92,
            "size_mb": 9.0}
    point = front_point(study, soup)
    assert point["on_front"] and point["score"].startswith("the soup's held-out")
    ensemble = {"kind": "ensemble", "members": [{"trial": 0}, {"trial": 1}],
                "val_score": 0.85, "size_mb": 11.0}
    figure = front_plots(study, "accuracy", {}, ensemble, soup)["pareto_front"][0]()
    stars = {t.name: t for t in figure.data}
    assert (list(stars["soup"].x), list(stars["soup"].y)) == ([9.0], [0.92])
    assert "soup of trials 0+1" in stars["soup"].text[0] and "ensemble" in stars
    axes = front_plots(study, "accuracy", {}, None, soup)["pareto_front"][1]()
    assert "soup" in [t.get_text() for t in axes.get_legend().get_texts()]
    best = {"objectives": ["accuracy", "size_mb"], "pick": "accuracy", "source": {"trial": 0},
            "pareto_front": [{"trial": 0, "backbone": "zoo/a", "val_score": 0.9,
                              "size_mb": 9.0}],
            "soup": {**soup, "pareto": point}}
    lines = _front_lines(best)
    assert any(line.startswith("| soup | trials 0+1 | 0.92") for line in lines)
    assert "The soup of trials is on the front" in lines[-1]


def _ask(study, backbone: str, method: str = "finetune"):
    trial = study.ask()
    trial.set_user_attr("backbone", backbone)
    trial.set_user_attr("params", {**PARAMS, "method": method})
    return trial


def test_each_group_keeps_the_weights_of_its_best_trials_only(tmp_path):
    study = optuna.create_study(direction="maximize")
    folder = study_folder(tmp_path / "out", "my study/1")
    assert folder == (tmp_path / "out" / "soup" / "my_study_1").resolve()
    model = torch.nn.Linear(2, 2)
    kept = {}
    for score, backbone in ((0.5, "tiny/a"), (0.7, "tiny/a"), (0.6, "tiny/a"), (0.4, "tiny/b")):
        trial = _ask(study, backbone)
        kept[trial.number] = keep_weights(trial, model, {**PARAMS}, backbone=backbone,
                                          pretrained=True, score=score, folder=folder,
                                          max_ingredients=2)
        study.tell(trial, score)
    files = sorted(p.name for p in folder.iterdir())
    # tiny/a keeps its best two (trial 1, then trial 2 displaced trial 0), tiny/b its one
    assert files == ["trial-1.pt", "trial-2.pt", "trial-3.pt"]
    assert kept[0] is not None and not kept[0].exists()
    state = torch.load(folder / "trial-1.pt", weights_only=True)
    assert torch.equal(state["weight"], model.weight.detach())

    worse = _ask(study, "tiny/a")  # below its group's best two: not written, said so
    assert keep_weights(worse, model, {**PARAMS}, backbone="tiny/a", pretrained=True,
                        score=0.1, folder=folder, max_ingredients=2) is None
    study.tell(worse, 0.1)
    assert trial_records(study)[worse.number].kept_weights == ""

    failing = _ask(study, "tiny/c")  # kept, then its trial failed: tidied away
    keep_weights(failing, model, {**PARAMS}, backbone="tiny/c", pretrained=True, score=0.9,
                 folder=folder, max_ingredients=2)
    study.tell(failing, state=TrialState.FAIL)
    assert tidy(study, max_ingredients=2) == [folder / f"trial-{failing.number}.pt"]
    assert sorted(p.name for p in folder.iterdir()) == files


def _study_nothing_averages(tmp_path, data) -> str:
    """Trial 0 (tiny/a, finetune) is the pick and kept its weights; trial 1 has another
    backbone and trial 2 another method, so nothing can be averaged with it."""
    storage = f"sqlite:///{tmp_path}/n.db"
    study = optuna.create_study(study_name="n", storage=storage, direction="maximize")
    weights = tmp_path / "trial-0.pt"
    torch.save({}, weights)
    for value, backbone, method in ((0.7, "tiny/a", "finetune"), (0.6, "tiny/b", "finetune"),
                                    (0.5, "tiny/a", "bitfit")):
        study.add_trial(create_trial(
            value=value, params={"lr": 0.01},
            distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
            user_attrs={"backbone": backbone, "params": {**PARAMS, "method": method},
                        **({"kept_weights": str(weights)} if value == 0.7 else {})}))
    space = {"backbones": ["tiny/a", "tiny/b"], "epochs": 1, "soup": True}
    study.set_user_attr("space", json.dumps(parse_space(space).model_dump(mode="json")))
    study.set_user_attr("data", str(data))
    return storage


def test_a_pick_nothing_can_be_averaged_with_gets_one_line_saying_why(
        tiny_zoo, three_splits, tmp_path, capsys):  # noqa: F811
    storage = _study_nothing_averages(tmp_path, three_splits)
    section = build_soup(optuna.load_study(study_name="n", storage=storage),
                         metric="accuracy", data=None)
    assert section["members"] == []
    assert section["note"] == (
        "not built: no other completed trial can be averaged with the pick (trial 0): 1 trial: "
        "backbone tiny/b, not the pick's tiny/a; 1 trial: method bitfit, not the pick's "
        "finetune")
    assert [item["trial"] for item in section["left_out"]] == [1, 2]
    main(["ensemble", "n", "--storage", storage, "--out", str(tmp_path / "again")])
    said = capsys.readouterr().out
    assert "soup: not built: no other completed trial can be averaged" in said
    written = yaml.safe_load((tmp_path / "again" / "soup.yaml").read_text())
    assert written["soup"]["note"] == section["note"]


SPACE = {"backbones": ["tiny/a", "tiny/b"], "epochs": 1, "pruner": "none",
         "soup": {"max_ingredients": 2}, "ensemble": {"max_members": 2},
         "params": {"image_size": 32, "batch_size": 8, "augment": "none",
                    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}


def test_a_search_with_a_soup_keeps_bounded_weights_and_writes_the_soup(
        tiny_zoo, three_splits, tmp_path, capsys):  # noqa: F811
    storage = f"sqlite:///{tmp_path}/s.db"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "out"
    main(["search", str(three_splits), "--space", str(space), "--trials", "6", "--storage",
          storage, "--study", "s", "--out", str(out), "--no-transfer-effect", "--device", "cpu"])
    said = capsys.readouterr().out
    best = yaml.safe_load((out / "best.yaml").read_text())
    section = best["soup"]
    pick = best["source"]["trial"]
    # the pick first; at least one more trial of its backbone tried; the kept averaged uniformly
    assert section["kind"] == "soup" and section["members"][0]["trial"] == pick
    assert len(section["tried"]) >= 2
    assert section["val_score_in_sample"] >= section["tried"][0]["with_soup"]
    assert {m["weight"] for m in section["members"]} == {round(1 / len(section["members"]), 4)}
    assert {m["backbone"] for m in section["members"]} == {best["backbone"]}
    assert {"val_score", "val_score_ci95", "single_val_score", "val_gain", "test_score",
            "test_score_ci95", "latency_ms", "latency", "left_out", "tried", "note"} <= set(section)
    assert section["single"]["trial"] == pick
    assert section["latency_ms"] == best["latency_ms"]  # one model's: the pick's
    # the kept file of the pick is its trial's model: alone it scores what the trial scored
    assert section["tried"][0] == {"trial": pick, "with_soup": round(best["val_score"], 5)}
    others = {r.number for r in trial_records(optuna.load_study(study_name="s",
                                                                storage=storage), ("complete",))
              if r.backbone != best["backbone"]}
    assert others <= {item["trial"] for item in section["left_out"]}
    # the console line and the leaderboard row (console and report.md; not the csv)
    assert "soup of trials" in said
    assert "| soup | soup | `soup of trials" in (out / "report.md").read_text()
    # at most max_ingredients files per backbone
    files = list((out / "soup" / "s").iterdir())
    records = {r.number: r for r in trial_records(optuna.load_study(study_name="s",
                                                                    storage=storage))}
    for backbone in ("tiny/a", "tiny/b"):
        mine = [f for f in files if records[int(f.stem.split("-")[1])].backbone == backbone]
        assert len(mine) <= 2

    # again from the stored study: the same soup, no trial runs
    main(["ensemble", "s", "--storage", storage, "--out", str(out)])
    said = capsys.readouterr().out
    again = yaml.safe_load((out / "soup.yaml").read_text())["soup"]

    def same(s):
        return {k: v for k, v in s.items() if k != "selection"}

    assert same(again) == same(section) and "soup of trials" in said
    assert same(yaml.safe_load((out / "best.yaml").read_text())["soup"]) == same(section)
    assert len(records) == 6

    # train --soup averages the kept weights: nothing trains (no epoch line)
    main(["train", str(out / "best.yaml"), "--soup", "--out", str(tmp_path / "model"),
          "--device", "cpu"])
    said = capsys.readouterr().out
    assert "nothing trained" in said and "epoch 1" not in said
    record = json.loads((tmp_path / "model" / "autotransfer.json").read_text())["metrics"]
    assert record["soup"]["reused"] and record["soup"]["kept"] == [
        m["trial"] for m in section["members"]]
    # the kept files are the trials' models: averaged again, they score what the section says
    assert record["val"]["accuracy"] == pytest.approx(section["val_score_in_sample"], abs=1e-4)
    assert record["test"]["accuracy"] == pytest.approx(section["test_score"], abs=1e-4)


# --- train --soup refits the trials it can average (no kept weights) ------------------------


def _study_for_soup(storage: str) -> None:
    """Trials 0 and 1 (tiny/a, full fine-tuning) can be averaged with each other; trial 2 has
    another backbone, trial 3 another method."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    study = optuna.create_study(study_name="s", storage=storage)
    for value, backbone, params in ((0.6, "tiny/a", {**PARAMS, "lr": 0.01}),
                                    (0.5, "tiny/a", {**PARAMS, "lr": 0.003}),
                                    (0.7, "tiny/b", {**PARAMS, "lr": 0.01}),
                                    (0.4, "tiny/a", {**PARAMS, "lr": 0.01, "method": "bitfit"})):
        study.add_trial(create_trial(
            value=value, params={"lr": params["lr"]},
            distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
            user_attrs={"backbone": backbone, "params": params}))


def test_train_soup_averages_the_trials_of_the_pick_s_backbone_and_names_the_others(
        tiny_zoo, three_splits, tmp_path, capsys):  # noqa: F811
    storage = f"sqlite:///{tmp_path}/s.db"
    _study_for_soup(storage)
    best = yaml.safe_load(Path(_best_with_ensemble(tmp_path, three_splits)).read_text())
    best["source"]["storage"] = storage
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(best))

    main(["train", str(path), "--soup", "--out", str(tmp_path / "soup"), "--device", "cpu"])
    said = capsys.readouterr().out
    assert "trial 2 cannot be averaged: backbone tiny/b" in said
    assert "trial 3 cannot be averaged: method bitfit" in said
    record = json.loads((tmp_path / "soup" / "autotransfer.json").read_text())["metrics"]
    soup = record["soup"]
    assert sorted(soup["tried"]) == [0, 1] and soup["kept"][0] == soup["tried"][0]
    # greedy: the soup never scores below its best ingredient on validation
    assert soup["val_score"] >= soup["single_val_score"]
    assert record["test"]["accuracy"] is not None
    # one plain model folder: predict reads it as any train output
    main(["predict", str(tmp_path / "soup"), str(three_splits / "test"), "--json",
          "--device", "cpu"])
    assert len(json.loads(capsys.readouterr().out)) == 12
