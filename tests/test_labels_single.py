"""Labels that are not one class (issue #26 kind 2): several classes in one cell, lists,
one-hot vectors; booleans one class however written; a missing class that differs in case."""

import csv
import json

import datasets
import pytest

from autotransfer.data import load_data, normalize_label
from autotransfer.errors import DataError


def _table(path, labels):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([f"row {i}", label] for i, label in enumerate(labels))
    return path


def _several(data) -> list[str]:
    return [n for n in data.notes if "look like several classes" in n]


@pytest.mark.parametrize("joined", ["sports,tech", "tech; food", "food|sports"])
def test_classes_joined_in_one_cell_are_named(tmp_path, joined):
    labels = ["sports", "tech", "food"] * 4 + [joined] * 3
    said = _several(load_data(_table(tmp_path / "t.csv", labels)))
    assert len(said) == 1
    assert "3 label(s) in 1 class(es)" in said[0] and repr(joined) in said[0]
    assert "single-label classifiers" in said[0]


def test_a_comma_in_a_class_that_is_not_two_classes_is_left_alone(tmp_path):
    labels = ["Smith, John", "Doe, Jane"] * 4
    assert _several(load_data(_table(tmp_path / "t.csv", labels))) == []


@pytest.mark.parametrize("vector", ["[1, 0, 0]", "['a', 'b']", '["a", "b"]'])
def test_list_and_one_hot_strings_are_named(tmp_path, vector):
    labels = ["a", "b", "[0, 1, 0]"] * 4 + [vector] * 2
    said = _several(load_data(_table(tmp_path / "t.csv", labels)))
    assert said and "[0, 1, 0]" in said[0]


def test_a_json_list_label_is_an_error_at_its_line(tmp_path):
    rows = [{"text": "one", "label": "a"}, {"text": "two", "label": ["a", "b"]}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"t\.jsonl:2: label is a list \(\['a', 'b'\]\); "
                                        "autotransfer trains single-label classifiers"):
        load_data(path)


def test_a_hugging_face_string_column_of_joined_classes_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    labels = ["a", "b"] * 5 + ["a|b"] * 2
    datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(12)], "label": labels}
                               ).save_to_disk(tmp_path / "hf")
    assert _several(load_data(tmp_path / "hf"))


def test_booleans_are_one_class_however_written(tmp_path):
    assert {normalize_label(x) for x in ("true", "True", "TRUE", True, " true ")} == {"true"}
    data = load_data(_table(tmp_path / "t.csv", ["True", "FALSE", "true", "false"] * 3))
    assert data.classes == ["false", "true"]


def test_a_val_class_that_differs_only_in_case_says_so(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(
        f"t{i},{c}\n" for i in range(3) for c in ("Cat", "Dog")))
    (tmp_path / "val.csv").write_text("text,label\nv,cat\nw,Dog\n")
    with pytest.raises(DataError, match=r"val\.csv: class 'cat' is not among the training "
                                        r"classes \(training has 'Cat', which differs only in "
                                        r"letter case\)"):
        load_data(tmp_path, modality="text")
