"""Split names people use (issue #26 kind 3) and path tables from other machines (kind 4)."""

import warnings

import datasets
import pytest

from autotransfer.data import DataWarning, check_data, load_data
from autotransfer.errors import DataError
from conftest import write_images


def _texts(path, n, classes=("a", "b", "c"), split=None):
    rows = [f"text {i} of {c} {path.stem}" for i in range(n) for c in classes]
    head = "text,label" + (",split" if split else "")
    body = [f"{r},{r.split()[3]}" + (f",{split}" if split else "") for r in rows]
    path.write_text("\n".join([head, *body]) + "\n")


def _warnings(data) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_data(data)
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def test_a_dev_folder_is_the_validation_split_and_an_other_folder_is_named(tmp_path):
    for split, n in (("train", 6), ("dev", 2), ("test", 2), ("extra", 1)):
        for cls, seed in (("circle", 1), ("square", 2)):
            write_images(tmp_path / split / cls, n, seed=seed + n)
    data = load_data(tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert all("/dev/" in str(p) for p in data.val.paths)
    said = " ".join(_warnings(data))
    assert "folder(s) beside the split folders" in said and str(tmp_path / "extra") in said


@pytest.mark.parametrize("name", ["dev", "validation", "valid"])
def test_a_dev_or_validation_file_is_the_validation_split(tmp_path, name):
    _texts(tmp_path / "train.csv", 4)
    _texts(tmp_path / f"{name}.csv", 2)
    _texts(tmp_path / "notes.csv", 1)
    data = load_data(tmp_path, modality="text")
    assert (len(data.train), len(data.val)) == (12, 6)
    said = " ".join(_warnings(data))
    assert "notes.csv" in said and "beside the split files" in said


@pytest.mark.parametrize("value", ["validation", "Valid", "DEV", "val"])
def test_a_split_column_takes_what_folders_take(tmp_path, value):
    _texts(tmp_path / "a.csv", 4, split="train")
    _texts(tmp_path / "b.csv", 2, split=value)
    table = tmp_path / "all.csv"
    table.write_text((tmp_path / "a.csv").read_text()
                     + "".join((tmp_path / "b.csv").read_text().splitlines(True)[1:]))
    data = load_data(table)
    assert (len(data.train), len(data.val)) == (12, 6)


def test_a_split_column_names_the_accepted_values(tmp_path):
    _texts(tmp_path / "t.csv", 2, split="holdout")
    with pytest.raises(DataError, match=r"t\.csv:2: split must be one of train, val, valid, "
                                         r"validation, dev, test, got 'holdout'"):
        load_data(tmp_path / "t.csv")


def test_a_hugging_face_dev_split_is_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))

    def part(n):
        return datasets.Dataset.from_dict({"text": [f"t{i} {c}" for i in range(n) for c in "ab"],
                                           "label": [c for _ in range(n) for c in "ab"]})

    datasets.DatasetDict({"train": part(5), "dev": part(2), "extra": part(1)}).save_to_disk(
        tmp_path / "hf")
    data = load_data(tmp_path / "hf")
    assert (len(data.train), len(data.val)) == (10, 4)
    assert any("'extra' not used" in n for n in data.notes)


def _images_and_table(tmp_path, lines):
    for cls, seed in (("circle", 1), ("square", 2)):
        write_images(tmp_path / "project" / "data" / cls, 3, seed=seed)
    table = tmp_path / "project" / "labels" / "t.csv"
    table.parent.mkdir()
    table.write_text("path,label\n" + "\n".join(lines) + "\n")
    return table


def test_windows_separators_are_read(tmp_path):
    table = _images_and_table(tmp_path, [f"..\\data\\{c}\\img{i}.png,{c}"
                                         for c in ("circle", "square") for i in range(3)])
    data = load_data(table, val_fraction=0.34)
    assert len(data.train) + len(data.val) == 6
    assert all(p.is_file() for p in data.train.paths)


def test_a_missing_file_says_where_it_looked_and_how_many_rows_miss(tmp_path, monkeypatch):
    # written from project/, so relative to the working directory, not to labels/
    table = _images_and_table(tmp_path, [f"data/{c}/img{i}.png,{c}"
                                         for c in ("circle", "square") for i in range(3)])
    monkeypatch.chdir(tmp_path / "project")
    with pytest.raises(DataError) as caught:
        load_data(table)
    said = str(caught.value)
    assert said.startswith(f"{table}:2: no such image file 'data/circle/img0.png'")
    assert "looked at labels/data/circle/img0.png" in said  # shown from where one stands
    assert "relative to the table's folder labels)" in said and "6 of 6 row(s)" in said
    assert "line 3 'data/circle/img1.png'" in said
    assert "6 of them exist relative to the working directory" in said


def test_absolute_paths_from_another_machine_are_counted(tmp_path):
    table = _images_and_table(tmp_path, ["data/circle/img0.png,circle",
                                         "/home/ana/x/img1.png,circle",
                                         "C:\\Users\\ana\\img2.png,square"])
    table.write_text(table.read_text().replace("data/circle", "../data/circle"))
    with pytest.raises(DataError, match=r"t\.csv:3: no such image file '/home/ana/x/img1\.png';"
                                        r" 2 of 3 row\(s\) name a missing file; also line 4"):
        load_data(table)
