"""Inventory of bad inputs: each is one line on stderr naming the file, key or id and what was
expected, with a non-zero exit and no traceback; ``--debug`` shows the traceback instead."""

from pathlib import Path

import pytest

from autotransfer import BackboneEntry, hookimpl
from autotransfer.cli import main
from autotransfer.testing import registered_plugin
from conftest import write_images

GOOD_SPACE = "backbones: [{id: timm/test_efficientnet, pretrained: false}]\nepochs: 1\n"


def _data(root: Path) -> Path:
    for cls, seed in (("cat", 1), ("dog", 2)):
        write_images(root / "data" / cls, 6, seed=seed)
    return root / "data"


def _space(root: Path, text: str = GOOD_SPACE) -> str:
    (root / "space.yaml").write_text(text)
    return str(root / "space.yaml")


def _search(root: Path, *extra: str, data=None, space=None) -> list[str]:
    return ["search", str(data or _data(root)), "--space", space or _space(root),
            "--trials", "1", "--storage", f"sqlite:///{root}/s.db", "--out", str(root / "o"),
            *extra]


def _csv(root: Path, text: str, name="labels.csv", raw: bytes | None = None) -> Path:
    write_images(root / "imgs", 4)
    path = root / name
    path.write_bytes(raw) if raw is not None else path.write_text(text)
    return path


def _with_space(text):
    return lambda r: _search(r, space=_space(r, text))


CASES = {
    # the command line
    "unbounded search": (lambda r: _search(r)[:-6] + ["--out", str(r / "o")],
                         "give --trials N, --timeout S or --time-budget S"),
    "zero trials": (lambda r: _search(r)[:4] + ["--trials", "0"], "--trials must be >= 1, got 0"),
    "zero time budget": (lambda r: _search(r)[:4] + ["--time-budget", "0"],
                         "--time-budget must be > 0 seconds, got 0.0"),
    "unknown device": (lambda r: _search(r, "--device", "tpu"),
                       "--device: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    "cuda without a GPU": (lambda r: _search(r, "--device", "cuda:3"),
                           "--device: device 'cuda:3' asked for, but"),
    # data
    "missing folder": (lambda r: _search(r, data=r / "nope"), "nope: no such file or folder"),
    "empty class": (lambda r: (_data(r) / "bird").mkdir() or _search(r, data=r / "data"),
                    "bird: empty class folder"),
    "single class": (lambda r: write_images(r / "one" / "cat", 3) or _search(r, data=r / "one"),
                     "found a single class 'cat'; classification needs at least 2 classes"),
    "no class folders": (lambda r: write_images(r / "flat", 3) or _search(r, data=r / "flat"),
                         "flat: no class sub-folders"),
    "unreadable images": (
        lambda r: [(_data(r) / "cat" / f"x{i}.png").write_bytes(b"junk") for i in range(3)]
        and _search(r, data=r / "data"),
        "3 of 15 images are unusable (more than 5%)"),
    "not a csv file": (lambda r: (r / "a.txt").write_text("x") and _search(r, data=r / "a.txt"),
                       "a.txt: expected a folder of class sub-folders, a .csv"),
    "csv missing column": (lambda r: _search(r, data=_csv(r, "file,label\nimgs/img0.png,a\n")),
                           "labels.csv: no column 'text' nor 'path' (found 'file', 'label')"),
    "csv missing image": (lambda r: _search(r, data=_csv(r, "path,label\nmissing.png,a\n")),
                          "labels.csv:2: no such image file 'missing.png'"),
    "csv not utf-8": (lambda r: _search(r, data=_csv(r, "", raw=b"path,label\n\xff.png,a\n")),
                      "labels.csv:2: not UTF-8 text (byte 0xff)"),
    "csv bad split": (lambda r: _search(r, data=_csv(
        r, "path,label,split\nimgs/img0.png,a,holdout\n")),
        "labels.csv:2: split must be one of train, val, valid, validation, dev, test, got "
        "'holdout'"),
    "csv empty label": (lambda r: _search(r, data=_csv(r, "path,label\nimgs/img0.png,\n")),
                        "labels.csv:2: empty label"),
    "val class not in train": (
        lambda r: [write_images(r / "d" / s / c, 3) for s, c in
                   (("train", "a"), ("train", "b"), ("val", "z"))] and _search(r, data=r / "d"),
        "val: class 'z' is not among the training classes"),
    # search spaces
    "missing space file": (lambda r: _search(r, space=str(r / "none.yaml")),
                           "none.yaml: no such search-space file"),
    "invalid yaml": (_with_space("backbones: [a\nepochs: 1\n"), "space.yaml:2: invalid YAML"),
    "space not a mapping": (_with_space("- a\n- b\n"),
                            "space.yaml: expected a mapping with backbones, epochs and params"),
    "unknown hyperparameter": (_with_space(GOOD_SPACE + "params: {learning_rate: 0.1}\n"),
                               "params.learning_rate: unknown hyperparameter"),
    "value out of range": (_with_space(GOOD_SPACE + "params: {freeze_fraction: 1.5}\n"),
                           "params.freeze_fraction: must be <= 1, got 1.5"),
    "low above high": (_with_space(
        GOOD_SPACE + "params: {lr: {type: float, low: 0.1, high: 0.01}}\n"),
        "params.lr: low must be <= high, got low=0.1, high=0.01"),
    "log with zero low": (_with_space(
        GOOD_SPACE + "params: {weight_decay: {type: float, low: 0, high: 1, log: true}}\n"),
        "params.weight_decay: low must be > 0 when log is true"),
    "bad distribution type": (_with_space(
        GOOD_SPACE + "params: {lr: {type: uniform, low: 0.1, high: 1}}\n"),
        "params.lr.type: must be float, int or categorical, got 'uniform'"),
    "unknown top-level key": (_with_space(GOOD_SPACE + "trials: 5\n"), "unknown key 'trials'"),
    "missing epochs": (_with_space("backbones: [timm/test_vit]\n"), "missing key 'epochs'"),
    "soup key typo": (_with_space(GOOD_SPACE + "soup: {max_ingredient: 3}\n"),
                      "space.yaml:3: unknown key 'max_ingredient' in soup"),
    "unknown pruner": (_with_space(GOOD_SPACE + "pruner: sometimes\n"),
                       "pruner: unknown pruner 'sometimes'; expected one of hyperband"),
    "backbone listed twice": (_with_space("backbones: [timm/test_vit, timm/test_vit]\nepochs: 1\n"),
                              "backbone 'timm/test_vit' is listed twice"),
    # backbones and plugins
    "unknown backbone id": (_with_space("backbones: [packaged/mobilenet_v2]\nepochs: 1\n"),
                            "unknown backbone 'packaged/mobilenet_v2'; did you mean "
                            "packaged/mobilenetv2_100"),
    "unsupported backbone option": (_with_space(
        "backbones: [{id: packaged/mobilenetv2_100, weights: w.pth}]\nepochs: 1\n"),
        "packaged/mobilenetv2_100: option 'weights' is not supported; expected one of: "
        "pretrained"),
    "plugin id without zoo": (lambda r: ["backbones", "nozoo"],
                              "plugin 'bad-ids' failed in register_backbones: PluginError: "
                              "backbone id must look like 'zoo/name', got 'nozoo'"),
    # storage
    "storage not a url": (lambda r: _search(r, "--storage", "mydb"),
                          "bad storage URL 'mydb': expected an SQLAlchemy URL"),
    "storage driver missing": (lambda r: _search(r, "--storage", "mysql+nope://u:pw@h/db"),
                               "storage mysql+nope://u:***@h/db: no database driver"),
    "storage folder missing": (lambda r: _search(r, "--storage", "sqlite:////no/such/x.db"),
                               "folder /no/such does not exist"),
    "journal folder missing": (lambda r: _search(r, "--storage", "journal:///no/such/s.log"),
                               "storage journal:///no/such/s.log: folder /no/such does not exist"),
    "journal not a journal": (lambda r: _search(r, "--storage", f"journal://{r / 'space.yaml'}"),
                              "space.yaml is not an Optuna journal file"),
}


class BadIds:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("nozoo", "image", loader=lambda pretrained=True: None))


def test_the_inventory_is_large():
    assert len(CASES) >= 25 and len(USAGE_CASES) >= 25


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_what_is_wrong(case, tmp_path, capsys):
    build, expected = CASES[case]
    args = build(tmp_path)
    if case == "plugin id without zoo":  # a broken plugin is reported, the command goes on
        with registered_plugin(BadIds(), "bad-ids"):
            main(args)
        assert expected in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    err = out.err.strip()
    assert info.value.code == 1, (out.out, err)
    assert expected in err, err
    assert err.startswith("error: ") and err.count("\n") == 0 and "Traceback" not in err
    assert "pw@" not in err


def test_debug_shows_the_traceback(tmp_path):
    from autotransfer.errors import DataError

    with pytest.raises(DataError, match="no such file or folder"):
        main(_search(tmp_path, "--debug", data=tmp_path / "nope"))


def test_an_internal_error_is_still_one_line(tmp_path, capsys, monkeypatch):
    from autotransfer.study import study

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(study, "search", broken)
    with pytest.raises(SystemExit) as info:
        main(_search(tmp_path))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1
    assert err == ("error: internal error: ZeroDivisionError: division by zero; run again "
                   "with --debug for the traceback, and please report it")


# Mistakes on the command line itself are usage errors, as in every click program: the usage
# line, "Try '... --help'", the error naming the option or argument (and the value given, and the
# closest spelling), exit 2; never "internal error". Every command, each kind that applies: a
# typo'd option, a missing argument (or an option's missing value), a bad type, a bad choice.
USAGE_CASES = {
    "unknown command": ([], ["serch", "x"], "No such command 'serch'. Did you mean 'search'?"),
    "search: typo": (["search"], ["search", "d", "--trails", "3"],
                     "No such option: --trails (Possible options: --track, --trials)"),
    "search: missing argument": (["search"], ["search", "--trials", "3"],
                                 "Missing argument 'data'."),
    "search: bad type": (["search"], ["search", "d", "-s", "s.yaml", "--workers", "abc"],
                         "Invalid value for '--workers': Input should be a valid integer, "
                         "unable to parse string as an integer, got 'abc'"),
    "search: bad number": (["search"], ["search", "d", "-s", "s.yaml", "--timeout", "soon"],
                           "Invalid value for '--timeout': Input should be a valid number"),
    "search: bad choice": (["search"], ["search", "d", "-s", "s.yaml", "--modality", "video"],
                           "Invalid value for '--modality': 'video' is not one of 'image', "
                           "'text', 'audio'."),
    "search: bad ranking": (["search"], ["search", "d", "-s", "s.yaml", "--prescreen-by", "x"],
                            "Invalid value for '--prescreen-by': 'x' is not one of 'logme', "
                            "'knn', 'params', 'imagenet'."),
    "prescreen: typo": (["prescreen"], ["prescreen", "d", "-s", "s.yaml", "--sample", "9"],
                        "No such option: --sample (Possible options: --samples, --space)"),
    "prescreen: missing argument": (["prescreen"], ["prescreen", "-s", "s.yaml"],
                                    "Missing argument 'data'."),
    "prescreen: bad type": (["prescreen"], ["prescreen", "d", "-s", "s.yaml", "--samples", "x"],
                            "Invalid value for '--samples': Input should be a valid integer"),
    "prescreen: bad choice": (["prescreen"], ["prescreen", "d", "-s", "s.yaml", "--by", "auc"],
                              "Invalid value for '--by': 'auc' is not one of 'logme', 'knn', "
                              "'params', 'imagenet'."),
    "dashboard: typo": (["dashboard"], ["dashboard", "--prot", "80"],
                        "No such option: --prot (Possible options: --host, --port)"),
    "dashboard: missing value": (["dashboard"], ["dashboard", "--port"],
                                 "Option '--port' requires an argument."),
    "dashboard: bad type": (["dashboard"], ["dashboard", "--port", "http"],
                            "Invalid value for '--port': Input should be a valid integer, "
                            "unable to parse string as an integer, got 'http'"),
    "plugins: typo": (["plugins"], ["plugins", "--verbose"], "No such option: --verbose"),
    "plugins: extra argument": (["plugins"], ["plugins", "all"],
                                "Got unexpected extra argument(s) (all)"),
    "backbones: typo": (["backbones"], ["backbones", "--modalty", "image"],
                        "No such option: --modalty (Possible options: --modality)"),
    "backbones: missing value": (["backbones"], ["backbones", "--modality"],
                                 "Option '--modality' requires an argument."),
    "backbones: bad choice": (["backbones"], ["backbones", "--modality", "video"],
                              "Invalid value for '--modality': 'video' is not one of 'image', "
                              "'text', 'audio'."),
    "train: typo": (["train"], ["train", "b.yaml", "-o", "m", "--epoch", "3"],
                    "No such option: --epoch (Possible options: --epochs, --export)"),
    "train: missing argument": (["train"], ["train", "-o", "m"], "Missing argument 'best'."),
    "train: bad type": (["train"], ["train", "b.yaml", "-o", "m", "--epochs", "1.5"],
                        "Invalid value for '--epochs': Input should be a valid integer, "
                        "unable to parse string as an integer, got '1.5'"),
    "train: bad choice": (["train"], ["train", "b.yaml", "-o", "m", "--refit-on", "all"],
                          "Invalid value for '--refit-on': 'all' is not one of 'train+val', "
                          "'train'."),
    "predict: typo": (["predict"], ["predict", "m", "x.png", "--batchsize", "8"],
                      "No such option: --batchsize (Possible options: --batch-size)"),
    "predict: missing argument": (["predict"], ["predict", "--json"],
                                  "Missing argument 'model_dir'."),
    "predict: bad type": (["predict"], ["predict", "m", "x.png", "--batch-size", "big"],
                          "Invalid value for '--batch-size': Input should be a valid integer"),
    "evaluate: typo": (["evaluate"], ["evaluate", "m", "d", "--jsn"],
                       "No such option: --jsn (Possible options: --json)"),
    "evaluate: missing argument": (["evaluate"], ["evaluate", "m"], "Missing argument 'data'."),
    "evaluate: bad type": (["evaluate"], ["evaluate", "m", "d", "--batch-size", "big"],
                           "Invalid value for '--batch-size': Input should be a valid integer"),
    "ensemble: typo": (["ensemble"], ["ensemble", "s", "--storag", "x"],
                       "No such option: --storag (Possible options: --storage)"),
    "ensemble: missing argument": (["ensemble"], ["ensemble"], "Missing argument 'study'."),
    "ensemble: bad type": (["ensemble"], ["ensemble", "s", "--max-members", "big"],
                           "Invalid value for '--max-members': Input should be a valid integer"),
    "report: typo": (["report"], ["report", "--studdy", "s", "-o", "r"],
                     "No such option: --studdy (Possible options: --study)"),
    "report: missing option": (["report"], ["report", "-o", "r"], "Missing option '--study'."),
    "inspect: typo": (["inspect"], ["inspect", "d", "--jsn"],
                      "No such option: --jsn (Possible options: --json)"),
    "inspect: missing argument": (["inspect"], ["inspect", "--json"],
                                  "Missing argument 'data'."),
    "inspect: bad choice": (["inspect"], ["inspect", "d", "--modality", "video"],
                            "Invalid value for '--modality': 'video' is not one of 'image', "
                            "'text', 'audio'."),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_a_command_line_mistake_is_a_usage_error(case, tmp_path, monkeypatch, capsys):
    command, args, expected = USAGE_CASES[case]
    monkeypatch.chdir(tmp_path)  # nothing it names exists: the command line is checked first
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    path = " ".join(["autotransfer", *command])
    assert info.value.code == 2, err
    assert err.startswith(f"Usage: {path} [OPTIONS]"), err
    assert f"Try '{path} --help' for help." in err
    assert f"Error: {expected}" in err, err
    assert "internal error" not in err and "please report" not in err and "Traceback" not in err


def test_every_command_has_its_usage_errors_in_the_inventory():
    import typer

    from autotransfer.cli.app import app

    commands = set(typer.main.get_command(app).commands)
    assert commands == {case.split(":")[0] for case in USAGE_CASES if ":" in case}


def test_the_fixed_choices_are_the_librarys():
    from typing import get_args

    from autotransfer.cli.app import ExportTo, QuantizeTo, RefitOn, Runtime
    from autotransfer.model.export import EXTRA_EXPORTS
    from autotransfer.model.onnx_export import QUANTIZE
    from autotransfer.model.predict import RUNTIMES
    from autotransfer.model.refit import REFIT_ON

    assert get_args(RefitOn) == REFIT_ON
    assert get_args(ExportTo) == EXTRA_EXPORTS and get_args(QuantizeTo) == QUANTIZE
    assert get_args(Runtime) == RUNTIMES


def test_a_bug_is_an_internal_error_even_when_the_command_line_is_fine(tmp_path, capsys,
                                                                      monkeypatch):
    """The other path: the same command line, valid, reaching code that fails unexpectedly."""
    from autotransfer.study import study

    def broken(*args, **kwargs):
        raise ValueError("invalid literal for int() with base 10: 'abc'")

    monkeypatch.setattr(study, "search", broken)
    with pytest.raises(SystemExit) as info:
        main(_search(tmp_path, "--workers", "2"))
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert err.startswith("error: internal error: ValueError: ") and "please report it" in err
    assert "Usage:" not in err
