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
                         "give --trials N or --timeout S"),
    "zero trials": (lambda r: _search(r)[:4] + ["--trials", "0"], "--trials must be >= 1, got 0"),
    "unknown device": (lambda r: _search(r, "--device", "tpu"),
                       "--device: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    "cuda without a GPU": (lambda r: _search(r, "--device", "cuda:3"),
                           "--device: device 'cuda:3' asked for, but"),
    "unknown modality": (lambda r: ["backbones", "--modality", "video"],
                         "--modality must be one of image, text, audio, got 'video'"),
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
        "3 of 15 images are unreadable (more than 5%)"),
    "not a csv file": (lambda r: (r / "a.txt").write_text("x") and _search(r, data=r / "a.txt"),
                       "a.txt: expected a folder of class sub-folders, a .csv"),
    "csv missing column": (lambda r: _search(r, data=_csv(r, "file,label\nimgs/img0.png,a\n")),
                           "labels.csv: missing column 'path'"),
    "csv missing image": (lambda r: _search(r, data=_csv(r, "path,label\nmissing.png,a\n")),
                          "labels.csv:2: no such image file 'missing.png'"),
    "csv not utf-8": (lambda r: _search(r, data=_csv(r, "", raw=b"path,label\n\xff.png,a\n")),
                      "labels.csv: not a UTF-8 CSV file"),
    "csv bad split": (lambda r: _search(r, data=_csv(
        r, "path,label,split\nimgs/img0.png,a,dev\n")),
        "labels.csv:2: split must be train, val or test, got 'dev'"),
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
}


class BadIds:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("nozoo", "image", loader=lambda pretrained=True: None))


def test_the_inventory_is_large():
    assert len(CASES) >= 25


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
    from autotransfer.search import study

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(study, "search", broken)
    with pytest.raises(SystemExit) as info:
        main(_search(tmp_path))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1
    assert err == ("error: internal error: ZeroDivisionError: division by zero; run again "
                   "with --debug for the traceback, and please report it")
