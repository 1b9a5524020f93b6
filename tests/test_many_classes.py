"""Sized for many classes and big images: warnings with a count and the first names, a
confusion matrix without per-cell text at 250 classes, Pillow's decompression-bomb guard named
with the way to allow larger images, and predict that skips a bad file and predicts the rest."""

import warnings

import numpy as np
import pytest
from PIL import Image

from autotransfer.data import DataWarning, LabelledData, Split
from autotransfer.data._images import open_image
from autotransfer.data.checks import examine
from autotransfer.errors import DataError
from autotransfer.listing import few
from autotransfer.study.results.scores import (
    LABELLED_CLASSES,
    _confusion_matplotlib,
    _confusion_plotly,
)
from conftest import write_images


def test_few_lists_a_count_and_the_first_names():
    assert few(["a", "b"]) == "a, b"
    names = [f"c{i}" for i in range(300)]
    assert few(names) == "c0, c1, c2, c3, c4, c5, c6, c7, ... (300 in all)"
    assert few(names, 4, last=2, noun="classes") == "c0, c1, ..., c298, c299 (300 classes in all)"


def _text_data(n_classes: int, train_counts, val_counts) -> LabelledData:
    def split(counts):
        labels = np.repeat(np.arange(n_classes), counts)
        return Split([], labels, [f"text {i}" for i in range(len(labels))])

    classes = [f"class_{i:03d}" for i in range(n_classes)]
    return LabelledData("text", classes, split(train_counts), split(val_counts), None, "t.csv")


def test_warnings_stay_one_readable_line_at_hundreds_of_classes():
    n = 300
    train = np.full(n, 3)
    train[0] = 200  # imbalanced beyond 10:1
    val = np.zeros(n, dtype=int)
    val[:2] = 1  # 298 classes missing from validation
    report = examine(_text_data(n, train, val))
    missing = next(w for w in report.warnings if "validation split holds no sample" in w)
    assert "'class_002', 'class_003'" in missing and "(298 in all)" in missing
    assert "class_299" not in missing and len(missing) < 400
    imbalance = next(w for w in report.warnings if "imbalanced" in w)
    assert imbalance.count("class_") == 8 and "(300 classes in all)" in imbalance
    assert "class_000 200" in imbalance  # the largest first, then the smallest
    few_classes = examine(_text_data(3, [30, 1, 2], [1, 1, 1])).warnings
    assert any("class_000 30, class_001 1, class_002 2" in w for w in few_classes)  # as before


def _matrix(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    matrix = np.diag(np.full(n, 12)) + rng.integers(0, 2, (n, n))
    return matrix.tolist()


def test_the_confusion_matrix_at_250_classes_prints_no_count_per_cell():
    classes = [f"class_{i:03d}" for i in range(250)]
    axes = _confusion_matplotlib(_matrix(250), classes, "Confusion")
    try:
        assert len(axes.texts) == 0  # no 62,500 annotations
        assert len(axes.get_xticklabels()) <= 50 and "250 classes" in axes.get_title()
    finally:
        import matplotlib.pyplot as plt

        plt.close(axes.figure)
    figure = _confusion_plotly(_matrix(250), classes, "Confusion")
    assert figure.data[0].texttemplate is None and figure.data[0].text is None
    small = [f"c{i}" for i in range(LABELLED_CLASSES)]
    assert _confusion_plotly(_matrix(LABELLED_CLASSES), small, "C").data[0].texttemplate
    axes = _confusion_matplotlib(_matrix(3), ["a", "b", "c"], "C")
    assert len(axes.texts) == 9  # a few classes: every count printed, as before
    import matplotlib.pyplot as plt

    plt.close(axes.figure)


def test_the_decompression_bomb_guard_names_the_file_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's guard, scaled down
    monkeypatch.delenv("AUTOTRANSFER_MAX_IMAGE_PIXELS", raising=False)
    Image.new("RGB", (50, 50)).save(tmp_path / "big.png")  # 2,500 > 2 x 1,000: refused
    Image.new("RGB", (40, 40)).save(tmp_path / "large.png")  # 1,600 > 1,000: a warning
    with pytest.raises(DataError) as info:
        open_image(tmp_path / "big.png")
    assert str(info.value) == (
        f"{tmp_path / 'big.png'}: 2,500 pixels, over Pillow's decompression-bomb limit of 2,000 "
        "pixels; if the file is trusted, allow it with the environment variable "
        "AUTOTRANSFER_MAX_IMAGE_PIXELS=2500 (or AUTOTRANSFER_MAX_IMAGE_PIXELS=none)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_image(tmp_path / "large.png")
    ours = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    # Pillow's own warning (no file, no way out) never reaches the user beside ours (#42 kind 9)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert ours == [f"{tmp_path / 'large.png'}: 1,600 pixels, over Pillow's decompression-bomb "
                    "warning limit of 1,000; if the file is trusted, allow it with the "
                    "environment variable AUTOTRANSFER_MAX_IMAGE_PIXELS=1600 (or "
                    "AUTOTRANSFER_MAX_IMAGE_PIXELS=none)"]
    from autotransfer.data.hf_media import sniff

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sniff((tmp_path / "big.png").read_bytes()) == "image"  # not Pillow's raw error
        assert sniff((tmp_path / "large.png").read_bytes()) == "image"
    assert not caught
    monkeypatch.setenv("AUTOTRANSFER_MAX_IMAGE_PIXELS", "2500")
    assert open_image(tmp_path / "big.png").size == (50, 50)
    assert Image.MAX_IMAGE_PIXELS == 2500
    monkeypatch.setenv("AUTOTRANSFER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="AUTOTRANSFER_MAX_IMAGE_PIXELS='lots': expected a"):
        open_image(tmp_path / "big.png")


@pytest.fixture
def model_dir(tmp_path):
    from autotransfer.contract.collect import get_backbone
    from autotransfer.model.export import export_model
    from autotransfer.plugin import TransferModel

    backbone = get_backbone("timm/test_efficientnet").load(pretrained=False)
    model = TransferModel(backbone, 2).eval()
    return export_model(model, backbone.preprocess, tmp_path / "model", classes=["a", "b"],
                        modality="image", backbone="timm/test_efficientnet", params={},
                        metrics={})


def test_predict_names_a_bad_file_and_predicts_the_rest(model_dir, tmp_path):
    from autotransfer.model.predict import predict

    folder = tmp_path / "photos"
    write_images(folder, 4)
    (folder / "img2.png").write_bytes(b"<html>a download error page</html>")
    with pytest.warns(DataWarning) as caught:
        predictions = predict(model_dir, [folder], device="cpu")
    assert [p.input for p in predictions] == [str(folder / f"img{i}.png") for i in (0, 1, 3)]
    message = next(str(w.message) for w in caught if "could not be read" in str(w.message))
    assert message.startswith(f"1 of 4 inputs could not be read and have no prediction: "
                              f"{folder / 'img2.png'}: unreadable image")
    for p in predictions:
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5
    (folder / "img0.png").write_bytes(b"")
    for i in (1, 3):
        (folder / f"img{i}.png").write_bytes(b"x")
    with pytest.raises(DataError, match="none of the 4 inputs could be read: "):
        predict(model_dir, [folder], device="cpu")
