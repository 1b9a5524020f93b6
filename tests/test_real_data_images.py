"""Real-world data (issue 15), part 2: images read as a photo viewer shows them, by the one
decoder that search, train, prescreen and predict share. Every fixture is built here."""

import numpy as np
import pytest
from PIL import Image

from autotransfer.data import ImagePreprocess, image_tensors, load_data, open_image

# --- 2. images read as a viewer shows them ---------------------------------------------------

_INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}


def _upright() -> Image.Image:
    """An asymmetric 24 x 16 picture: a red block at the top left, the rest blue."""
    pixels = np.zeros((16, 24, 3), dtype=np.uint8)
    pixels[...] = (0, 0, 255)
    pixels[:6, :8] = (255, 0, 0)
    return Image.fromarray(pixels)


def _stored_rotated(path, orientation: int, fmt: str) -> None:
    """Save ``_upright()`` as a camera would: pixels turned, EXIF Orientation set."""
    image = _upright().transpose(_INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation", [3, 6, 8])  # the handed case: JPEG, 3 / 6 / 8
def test_case_exif_rotated_jpeg_is_read_as_shown(tmp_path, orientation):
    _stored_rotated(tmp_path / "x.jpg", orientation, "JPEG")
    shown = np.asarray(open_image(tmp_path / "x.jpg"), dtype=np.int16)
    assert shown.shape == (16, 24, 3)
    assert np.abs(shown - np.asarray(_upright(), dtype=np.int16)).mean() < 12


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")])
def test_other_orientations_and_formats_are_read_as_shown(tmp_path, orientation, fmt, suffix):
    path = tmp_path / f"x{suffix}"
    image = _upright().transpose(_INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, format=fmt, exif=exif.tobytes(),
               **({"lossless": True} if fmt == "WEBP" else {}))
    assert np.array_equal(np.asarray(open_image(path)), np.asarray(_upright()))


def test_training_and_predict_decode_rotated_photos_like_upright_ones(tmp_path):
    """One decoder everywhere: the tensors search, train, prescreen and predict get."""
    for orientation in (1, 6):
        for cls in ("a", "b"):
            folder = tmp_path / f"o{orientation}" / cls
            folder.mkdir(parents=True)
            for i in range(3):
                if orientation == 1:
                    _upright().save(folder / f"{i}.png")
                else:
                    _stored_rotated(folder / f"{i}.png", orientation, "PNG")
    preprocess = ImagePreprocess(16, (0.5,) * 3, (0.5,) * 3)
    upright, _ = image_tensors(load_data(tmp_path / "o1", val_fraction=0.34), "train",
                               preprocess)
    rotated, _ = image_tensors(load_data(tmp_path / "o6", val_fraction=0.34), "train",
                               preprocess)
    assert torch_equal(upright, rotated)


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_16_bit_images_are_scaled_by_bit_depth(tmp_path):
    ramp = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    gray = np.asarray(open_image(tmp_path / "deep.png"))[0, :, 0]
    assert gray.tolist() == [0, 1, 128, 255]
    Image.fromarray(ramp).save(tmp_path / "deep.tif")
    assert np.asarray(open_image(tmp_path / "deep.tif"))[0, :, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("values, expected", [
    (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),           # 0..1: times 255
    (np.array([[-4.0, 0.0, 4.0]], np.float32), [0, 128, 255]),          # else the value range
    (np.array([[np.nan, 0.0, 1.0]], np.float32), [0, 0, 255]),          # NaN is 0
])
def test_float_images_are_scaled_by_their_value_range(tmp_path, values, expected):
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert np.asarray(open_image(tmp_path / "f.tif"))[0, :, 0].tolist() == expected


@pytest.mark.parametrize("values, expected", [
    ([0, 100, 255], [0, 100, 255]), ([0, 32896, 65535], [0, 128, 255]),
    ([-1000, 0, 1000], [0, 128, 255]), ([0, 500_000, 1_000_000], [0, 128, 255]),
])
def test_32_bit_integer_images_follow_the_rule(tmp_path, values, expected):
    Image.fromarray(np.array([values], np.int32), mode="I").save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    assert np.asarray(open_image(tmp_path / "i.tif"))[0, :, 0].tolist() == expected


def test_cmyk_palette_alpha_and_first_frames_stay_right(tmp_path):
    Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert np.abs(np.asarray(open_image(tmp_path / "cmyk.jpg"))[4, 4].astype(int)
                  - (255, 0, 0)).max() < 8
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "p.png", transparency=0)
    shown = np.asarray(open_image(tmp_path / "p.png"))
    assert shown[0, 0].tolist() == [255, 255, 255] and shown[1, 1].tolist() == [0, 255, 0]
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (10, 20, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    shown = np.asarray(open_image(tmp_path / "a.png"))
    assert shown[0, 0].tolist() == [10, 20, 30] and shown[3, 3].tolist() == [255, 255, 255]
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    assert np.asarray(open_image(tmp_path / "la.png"))[3, 3].tolist() == [255, 255, 255]
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    for suffix in (".gif", ".tif"):
        frames[0].save(tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:])
        assert Image.open(tmp_path / f"anim{suffix}").n_frames == 2
        red = np.asarray(open_image(tmp_path / f"anim{suffix}"))[3, 3]
        assert red[0] > 200 and red[2] < 50, suffix
