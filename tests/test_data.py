import numpy as np
import pytest
import torch
from PIL import Image

from autotransfer.data import (
    DataWarning,
    ImagePreprocess,
    augment,
    check_images,
    image_tensors,
    load_data,
    load_image,
    stratified_split,
    warn_cross_split_duplicates,
)
from autotransfer.errors import DataError
from conftest import write_images

PRE = ImagePreprocess(size=16, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)


def test_class_folders_are_split_stratified_and_seeded(class_folders):
    data = load_data(class_folders, val_fraction=0.2, seed=0)
    assert data.classes == ["cat", "dog"]
    assert len(data.train) == 16 and len(data.val) == 4 and data.test is None
    assert np.bincount(data.val.labels).tolist() == [2, 2]
    assert not set(data.train.paths) & set(data.val.paths)
    again = load_data(class_folders, val_fraction=0.2, seed=0)
    assert again.val.paths == data.val.paths
    other = load_data(class_folders, val_fraction=0.2, seed=1)
    assert other.val.paths != data.val.paths


def test_stratified_split_keeps_single_sample_classes_in_training():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    val = stratified_split(labels, 0.4, seed=3)
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 2, 0]


def test_train_val_test_folders_are_used_as_given(tmp_path):
    for split, n in (("train", 6), ("val", 3), ("test", 2)):
        for cls in ("a", "b"):
            write_images(tmp_path / split / cls, n)
    data = load_data(tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 6, 4)


def test_train_folder_without_val_is_split_here(tmp_path):
    for cls in ("a", "b"):
        write_images(tmp_path / "train" / cls, 5)
    data = load_data(tmp_path, val_fraction=0.2)
    assert len(data.train) + len(data.val) == 10 and len(data.val) == 2


def test_csv_with_path_label_and_optional_split(tmp_path):
    write_images(tmp_path / "imgs", 6)
    rows = ["path,label,split"] + [
        f"imgs/img{i}.png,{'x' if i % 2 else 'y'},{'test' if i == 5 else 'train'}" for i in range(6)
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_data(tmp_path / "labels.csv", val_fraction=0.3)
    assert data.classes == ["x", "y"]
    assert len(data.test) == 1 and len(data.train) + len(data.val) == 5


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "CMYK"])
def test_grayscale_rgba_palette_and_16_bit_images_decode_to_rgb(tmp_path, mode):
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg"
    image = Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).convert(
        "L" if mode == "I;16" else mode
    )
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 256)
    if mode == "P":
        image.info["transparency"] = 0
    image.save(path)
    array = load_image(path, PRE)
    assert array.shape == (3, 16, 16) and array.dtype == np.uint8
    assert array.mean() > 150  # a light image stays light (alpha composited on white)


def test_resize_keeps_aspect_then_centre_crops(tmp_path):
    # three 20-px bands, black | grey | white: resized on its short side and centre-cropped,
    # the crop is the grey band alone; a stretch would show black and white at the edges, and a
    # left crop black
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, 20:40] = 128
    pixels[:, 40:] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    array = load_image(tmp_path / "wide.png", PRE).astype(int)
    assert abs(array[:, :, 1:-1].mean() - 128) < 6
    assert abs(array[:, :, 0].mean() - 128) < 40 and abs(array[:, :, -1].mean() - 128) < 40


def test_image_tensors_are_decoded_once_and_cached(class_folders):
    data = load_data(class_folders)
    x, y = image_tensors(data, "train", PRE)
    assert x.shape == (len(data.train), 3, 16, 16) and x.dtype == torch.uint8
    assert image_tensors(data, "train", PRE)[0] is x


def test_augment_flip_and_crop_keep_shape_and_dtype():
    batch = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    for kind in ("none", "flip", "crop_flip"):
        out = augment(batch, kind, g)
        assert out.shape == batch.shape and out.dtype == torch.uint8
    flips = [augment(batch, "flip", g) for _ in range(20)]
    assert any(torch.equal(f[0], batch[0].flip(-1)) for f in flips)


def test_missing_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such file or folder"):
        load_data(tmp_path / "nowhere")


def test_empty_class_folder_is_an_error_naming_it(class_folders):
    (class_folders / "bird").mkdir()
    with pytest.raises(DataError, match=r"bird: empty class folder"):
        load_data(class_folders)


def test_single_class_is_an_error(tmp_path):
    write_images(tmp_path / "only" / "cat", 4)
    with pytest.raises(DataError, match=r"single class 'cat'.*at least 2 classes"):
        load_data(tmp_path / "only")


def test_folder_without_class_subfolders_is_an_error(tmp_path):
    write_images(tmp_path / "flat", 3)
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data(tmp_path / "flat")


def test_a_few_unreadable_images_are_skipped_with_a_warning_that_lists_them(class_folders):
    (class_folders / "cat" / "broken.png").write_bytes(b"not a png at all")
    data = load_data(class_folders)
    n = len(data.train) + len(data.val)
    with pytest.warns(DataWarning, match=r"skipped 1 unusable image\(s\): .*broken\.png"):
        skipped = check_images(data, max_unreadable=0.05)
    assert [p.name for p in skipped] == ["broken.png"]
    assert len(data.train) + len(data.val) == n - 1
    assert all(p.name != "broken.png" for p in data.train.paths + data.val.paths)


def test_truncated_image_counts_as_unreadable(class_folders):
    good = class_folders / "cat" / "img0.png"
    (class_folders / "cat" / "cut.png").write_bytes(good.read_bytes()[:200])
    data = load_data(class_folders)
    with pytest.warns(DataWarning, match=r"cut\.png"):
        check_images(data)


def test_too_many_unreadable_images_are_an_error_naming_them(class_folders):
    for i in range(3):
        (class_folders / "cat" / f"broken{i}.png").write_bytes(b"not a png at all")
    data = load_data(class_folders)
    with pytest.raises(DataError, match=r"3 of 23 images are unusable .*broken0\.png"):
        check_images(data)


def test_the_same_file_in_two_splits_is_reported(tmp_path):
    for seed, (split, cls) in enumerate([(s, c) for s in ("train", "test") for c in "ab"]):
        write_images(tmp_path / split / cls, 3, seed=seed)
    leaked = tmp_path / "test" / "a" / "leak.png"
    leaked.write_bytes((tmp_path / "train" / "b" / "img1.png").read_bytes())
    data = load_data(tmp_path)
    with pytest.warns(DataWarning, match=r"1 file\(s\) appear in two splits.*leak\.png"):
        pairs = warn_cross_split_duplicates(data)
    assert [(a.name, b.name) for a, b in pairs] in ([("img1.png", "leak.png")],
                                                    [("leak.png", "img1.png")])


def test_csv_errors_name_the_file_and_row(tmp_path):
    (tmp_path / "a.csv").write_text("file,label\nx.png,cat\n")
    with pytest.raises(DataError, match=r"a\.csv: no column 'text' nor 'path' \(found 'file'"):
        load_data(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,label\nmissing.png,cat\n")
    with pytest.raises(DataError, match=r"b\.csv:2: no such image file 'missing\.png'"):
        load_data(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_bytes(b"path,label\n\xff\xfe.png,cat\n")
    with pytest.raises(DataError, match=r"c\.csv:2: not UTF-8 text"):
        load_data(tmp_path / "c.csv")


def test_validation_class_unknown_to_training_is_an_error(tmp_path):
    for cls in ("a", "b"):
        write_images(tmp_path / "train" / cls, 3)
    write_images(tmp_path / "val" / "c", 2)
    with pytest.raises(DataError, match=r"val: class 'c' is not among the training classes"):
        load_data(tmp_path)
