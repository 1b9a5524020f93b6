"""predict accounts for every input row (#42 kind 6): an empty or whitespace-only text is
predicted and named in one warning; a CSV row whose file is missing is named while the other
rows are predicted."""

import pytest

from autotransfer.data import DataWarning
from autotransfer.model.predict import collect_inputs


def _collect(modality, inputs=(), texts=()):
    return collect_inputs(modality, list(inputs), list(texts), text_column="text",
                          model_dir="model")


def test_empty_and_whitespace_rows_of_a_one_column_csv_are_kept_and_named(tmp_path):
    csv = tmp_path / "texts.csv"
    csv.write_text('text\n"A wonderful film."\n""\n   \n\t\n12345\n', encoding="utf-8")
    with pytest.warns(DataWarning) as caught:
        names, samples = _collect("text", [csv])
    assert names == [f"{csv}:{line}" for line in range(2, 7)]
    assert samples == ["A wonderful film.", "", "   ", "\t", "12345"]
    assert str(caught[0].message) == (
        f"3 of 5 inputs are empty or whitespace-only texts, predicted from no words: {csv}:3, "
        f"{csv}:4, {csv}:5")


def test_one_empty_text_in_a_two_column_csv_does_not_stop_the_batch(tmp_path):
    csv = tmp_path / "two.csv"
    csv.write_text("id,text\n1,Great fun.\n2,\n3,A bore.\n", encoding="utf-8")
    with pytest.warns(DataWarning, match=r"1 of 3 inputs are empty .*: .*two\.csv:3$"):
        names, _ = _collect("text", [csv])
    assert names == [f"{csv}:2", f"{csv}:3", f"{csv}:4"]


def test_empty_texts_given_directly_are_kept_and_named(tmp_path):
    with pytest.warns(DataWarning, match=r"1 of 2 inputs are empty .*: --text 2 \('   '\)"):
        names, samples = _collect("text", texts=["fine", "   "])
    assert names == ["fine", "'   '"] and samples == ["fine", "   "]


def test_a_csv_row_whose_image_is_missing_is_named_and_the_rest_kept(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    csv = tmp_path / "images.csv"
    csv.write_text("path\na.png\ngone.png\n", encoding="utf-8")
    with pytest.warns(DataWarning, match=r"images\.csv:3: no such file 'gone\.png'"):
        names, _ = _collect("image", [csv])
    assert names == [str(tmp_path / "a.png")]
