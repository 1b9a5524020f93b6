"""predict accounts for every input row (#42 kind 6): an empty or whitespace-only text, or a
CSV row whose file is missing, is named in one warning while the other rows are predicted."""

import pytest

from autotransfer.data import DataWarning
from autotransfer.errors import DataError
from autotransfer.model.predict import collect_inputs


def _collect(modality, inputs=(), texts=()):
    return collect_inputs(modality, list(inputs), list(texts), text_column="text",
                          model_dir="model")


def test_empty_and_whitespace_rows_of_a_one_column_csv_are_named_not_dropped(tmp_path):
    csv = tmp_path / "texts.csv"
    csv.write_text('text\n"A wonderful film."\n""\n   \n\t\n12345\n', encoding="utf-8")
    with pytest.warns(DataWarning) as caught:
        names, samples = _collect("text", [csv])
    assert names == [f"{csv}:2", f"{csv}:6"] and samples == ["A wonderful film.", "12345"]
    message = str(caught[0].message)
    assert message.startswith("3 of 5 inputs have no prediction: ")
    for line in (3, 4, 5):
        assert f"{csv}:{line}: empty text" in message


def test_one_empty_text_in_a_two_column_csv_does_not_stop_the_batch(tmp_path):
    csv = tmp_path / "two.csv"
    csv.write_text("id,text\n1,Great fun.\n2,\n3,A bore.\n", encoding="utf-8")
    with pytest.warns(DataWarning, match=r"1 of 3 inputs have no prediction: .*two\.csv:3: "):
        names, _ = _collect("text", [csv])
    assert names == [f"{csv}:2", f"{csv}:4"]


def test_empty_texts_given_directly_are_named_and_all_empty_is_one_error(tmp_path):
    with pytest.warns(DataWarning, match=r"--text 2 \('   '\): empty text"):
        names, _ = _collect("text", texts=["fine", "   "])
    assert names == ["fine"]
    with pytest.raises(DataError, match=r"none of the 1 inputs can be predicted: --text 1"):
        _collect("text", texts=[""])


def test_a_csv_row_whose_image_is_missing_is_named_and_the_rest_kept(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    csv = tmp_path / "images.csv"
    csv.write_text("path\na.png\ngone.png\n", encoding="utf-8")
    with pytest.warns(DataWarning, match=r"images\.csv:3: no such file 'gone\.png'"):
        names, _ = _collect("image", [csv])
    assert names == [str(tmp_path / "a.png")]
