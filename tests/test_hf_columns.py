"""Hugging Face columns read by what they hold (issue #26 kind 1): labels of any numeric,
string or bool type, image columns saved by pyarrow without their feature, path columns."""

import io

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from autotransfer.data import load_data
from autotransfer.errors import DataError


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _texts(n=12):
    return [f"sample text {i}" for i in range(n)]


@pytest.mark.parametrize(("labels", "classes"), [
    (pa.array([0.0, 1.0, 2.0] * 4, pa.float64()), ["0", "1", "2"]),
    (pa.array([0, 1, 2] * 4, pa.uint8()), ["0", "1", "2"]),
    (pa.array([3, 42, 7] * 4, pa.int16()), ["3", "7", "42"]),
    (pa.array([True, False] * 6, pa.bool_()), ["false", "true"]),
])
def test_a_label_column_of_any_numeric_or_bool_type_is_read(tmp_path, labels, classes):
    pq.write_table(pa.table({"text": _texts(), "label": labels}), tmp_path / "d.parquet")
    for label_column in (None, "label"):  # also when named, as --label-column label names it
        options = {} if label_column is None else {"label_column": label_column}
        data = load_data(tmp_path / "d.parquet", **options)
        assert data.classes == classes
        assert len(data.train) + len(data.val) == 12


def test_minus_one_is_no_label_in_any_integer_column(tmp_path):
    labels = pa.array([0, 1, -1, 1, 0, -1, 0, 1, 0, 1], pa.int32())
    pq.write_table(pa.table({"text": _texts(10), "label": labels}), tmp_path / "d.parquet")
    data = load_data(tmp_path / "d.parquet")
    assert data.classes == ["0", "1"]
    assert len(data.train) + len(data.val) == 8
    assert any("left out 2 row(s) without a label" in n for n in data.notes)


def test_a_label_column_that_cannot_hold_labels_says_which_types_can(tmp_path):
    table = pa.table({"text": _texts(2), "label": pa.array([[1, 0], [0, 1]])})
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"label column 'label' is List, expected ClassLabel, "
                                        r"string, integer \(signed or not\), float or bool "
                                        r"\(several labels per row: autotransfer trains "
                                        r"single-label classifiers"):
        load_data(tmp_path / "d.parquet")


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("stored", ["struct", "binary"])
def test_image_bytes_saved_without_the_image_feature_are_images(tmp_path, stored):
    images = [_png(i * 20) for i in range(10)]
    column = ([{"bytes": b, "path": None} for b in images] if stored == "struct" else
              pa.array(images, pa.binary()))
    pq.write_table(pa.table({"img": column, "label": ["a", "b"] * 5}), tmp_path / "d.parquet")
    data = load_data(tmp_path / "d.parquet")
    assert data.modality == "image" and data.classes == ["a", "b"]
    assert "image column 'img' (Image)" in data.origin
    with Image.open(data.train.paths[0].open("rb")) as image:
        assert image.size == (8, 8)


def test_a_column_of_image_file_names_is_read_as_files_not_as_text(tmp_path):
    (tmp_path / "imgs").mkdir()
    names = []
    for i in range(10):
        names.append(f"imgs/{'cat' if i % 2 else 'dog'}_{i}.png")
        (tmp_path / names[-1]).write_bytes(_png(i * 20))
    table = pa.table({"file_name": names, "label": ["cat" if i % 2 else "dog" for i in range(10)]})
    pq.write_table(table, tmp_path / "d.parquet")
    data = load_data(tmp_path / "d.parquet")
    assert data.modality == "image"
    with Image.open(data.train.paths[0].open("rb")) as image:
        assert image.size == (8, 8)
    with pytest.raises(DataError, match="column 'file_name' holds image file names, not texts"):
        load_data(tmp_path / "d.parquet", modality="text")


def test_a_column_of_missing_file_names_is_an_error_naming_it(tmp_path):
    table = pa.table({"path": [f"gone/{i}.jpg" for i in range(6)], "label": ["a", "b"] * 3})
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"column 'path' holds image file names \('gone/0\.jpg'"
                                        r".*6 of 6 are not files"):
        load_data(tmp_path / "d.parquet")
