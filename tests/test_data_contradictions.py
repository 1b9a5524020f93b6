"""Checks that see what people get wrong (issue #26 kind 7): identical content under two
labels, duplicate texts across splits, and a resumed study whose data changed."""

import warnings

import pytest

from autotransfer.data import DataWarning, load_data, warn_cross_split_duplicates
from autotransfer.data.duplicates import find_duplicates
from autotransfer.data.fingerprint import changes, data_fingerprint
from autotransfer.data.inspect import inspect
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin
from conftest import write_images


def _messages(data) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_cross_split_duplicates(data)
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_the_same_image_under_two_labels_is_contradictory_in_one_split(tmp_path):
    write_images(tmp_path / "cat", 4, seed=1)
    write_images(tmp_path / "dog", 4, seed=2)
    (tmp_path / "dog" / "copy.png").write_bytes((tmp_path / "cat" / "img2.png").read_bytes())
    data = load_data(tmp_path, val_fraction=0.5, seed=0)
    found = find_duplicates(data)
    assert [sorted(p.name for p in samples) for samples, _ in found.contradictions] == [
        ["copy.png", "img2.png"]]
    assert found.contradictions[0][1] == ["cat", "dog"]
    said = " ".join(_messages(data))
    assert "1 file(s) have identical content under different labels" in said
    assert "copy.png" in said and "(cat, dog)" in said


def _table(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))


def test_texts_equal_after_normalisation_under_two_labels_are_contradictory(tmp_path):
    rows = [(f"text number {i}", "ab"[i % 2]) for i in range(8)]
    _table(tmp_path / "t.csv", [*rows, ("Great  Movie", "a"), ("great movie", "b")])
    data = load_data(tmp_path / "t.csv", val_fraction=0.25)
    said = " ".join(_messages(data))
    assert "1 text(s) have identical content under different labels" in said
    assert "'Great  Movie'" in said or "'great movie'" in said


def test_duplicate_texts_across_splits_are_named_like_duplicate_files(tmp_path):
    _table(tmp_path / "train.csv", [(f"text number {i}", "ab"[i % 2]) for i in range(8)])
    _table(tmp_path / "val.csv", [("TEXT number 3", "b"), ("something new", "a")])
    data = load_data(tmp_path, modality="text")
    said = _messages(data)
    assert said == ["1 text(s) appear in two splits, which inflates validation and test "
                    "scores: 'text number 3' = 'TEXT number 3' (in train and val)"]
    report = inspect(tmp_path, modality="text")
    assert any("1 text(s) appear in two splits" in w for w in report.warnings)


def test_a_fingerprint_sees_counts_and_content_change(tmp_path):
    for cls, seed in (("a", 1), ("b", 2)):
        write_images(tmp_path / "train" / cls, 3, seed=seed)
        write_images(tmp_path / "val" / cls, 2, seed=seed + 5)
    before = data_fingerprint(load_data(tmp_path))
    assert changes(before, data_fingerprint(load_data(tmp_path))) == []
    (tmp_path / "val" / "a" / "img0.png").unlink()
    assert changes(before, data_fingerprint(load_data(tmp_path))) == ["val 4 -> 3 samples"]
    write_images(tmp_path / "val" / "a", 1, seed=9, size=(30, 30))  # img0 back, other content
    assert changes(before, data_fingerprint(load_data(tmp_path))) == ["val content changed"]


def test_resuming_a_study_whose_data_changed_warns(tmp_path):
    for cls, seed in (("a", 1), ("b", 2)):
        write_images(tmp_path / "data" / "train" / cls, 4, seed=seed)
        write_images(tmp_path / "data" / "val" / cls, 2, seed=seed + 5)
    space = parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1, "pruner": "none",
                         "params": {"lr": 3e-3}})
    options = {"storage": f"sqlite:///{tmp_path}/s.db", "study_name": "s", "device": "cpu",
               "out": tmp_path / "out"}
    with registered_plugin(FakeZoo()):
        search(tmp_path / "data", space, trials=1, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)  # the same data: no warning
            search(tmp_path / "data", space, trials=2, **options)
        write_images(tmp_path / "data" / "val" / "b", 3, seed=11)  # 1 more, 2 replaced
        with pytest.warns(DataWarning, match=r"resuming study 's', whose data changed since it "
                                             r"began \(val 4 -> 5 samples\)"):
            search(tmp_path / "data", space, trials=3, **options)
