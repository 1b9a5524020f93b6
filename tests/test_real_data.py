"""Real-world data (issue 15), part 1: finding files and reading tables.

Every fixture is built here. Each handed case (``shared/cases``) is one test; the other tests
try other instances of the same kind of fault.
"""

import codecs
import os
import warnings

import numpy as np
import pytest
import soundfile
from PIL import Image

from autotransfer.contract.collect import get_modality
from autotransfer.data import (
    DataWarning,
    check_data,
    detect_modality,
    load_data,
    read_text_table,
)
from autotransfer.errors import DataError
from autotransfer.model.predict import collect_inputs
from conftest import write_images


def _no_data_warning(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        check_data(data)


def _count(data) -> int:
    return sum(len(s) for s in data.splits().values())


# --- 1. one way to find files -------------------------------------------------------------


def _junk_twins(folder):
    """macOS / Windows / Jupyter droppings beside and under ``folder``'s images."""
    for image in list(folder.glob("*.png")):
        (folder / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "desktop.ini").write_text("[.ShellClassInfo]\n")
    checkpoints = folder / ".ipynb_checkpoints"
    checkpoints.mkdir()
    for image in list(folder.glob("img*.png"))[:2]:
        (checkpoints / image.name).write_bytes(image.read_bytes())


def test_case_os_junk_is_ignored_at_any_depth_and_predict_reads_a_class_folder(tmp_path):
    root = tmp_path / "data"
    for seed, cls in enumerate(("circle", "square", "triangle")):
        write_images(root / cls, 15, seed=seed)
        _junk_twins(root / cls)
    macosx = root / "__MACOSX" / "circle"
    macosx.mkdir(parents=True)
    (macosx / "._img0.png").write_bytes(b"\x00\x05\x16\x07")
    (root / ".DS_Store").write_bytes(b"Bud1")
    (root / ".ipynb_checkpoints").mkdir()
    assert detect_modality(root) == "image"
    data = load_data(root)
    assert data.classes == ["circle", "square", "triangle"] and _count(data) == 45
    _no_data_warning(data)
    names, _ = collect_inputs("image", [root / "circle"], [], text_column="text", model_dir="m")
    assert len(names) == 15 and all("._" not in n and "checkpoints" not in n for n in names)


def test_other_junk_names_are_ignored_too(tmp_path):
    root = tmp_path / "data"
    for seed, cls in enumerate(("a", "b")):
        write_images(root / cls, 6, seed=seed)
    for junk in (".git/objects/x.png", "a/.thumbnails/t.png", "a/sub/Desktop.ini",
                 "b/ehthumbs.db", "b/img0.png~", ".Spotlight-V100/a.png", "b/._notes.txt",
                 "b/deep/er/.ipynb_checkpoints/img0-checkpoint.png", "$RECYCLE.BIN/c/x.png"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"junk")
    data = load_data(root)
    assert data.classes == ["a", "b"] and _count(data) == 12
    _no_data_warning(data)


def test_symlinked_split_folders_and_files_are_followed_without_looping(tmp_path):
    store = tmp_path / "store"
    for split, n in (("train", 8), ("val", 3)):
        for seed, cls in enumerate(("cat", "dog")):
            write_images(store / split / cls, n, seed=seed + n)
    root = tmp_path / "data"
    root.mkdir()
    (root / "train").symlink_to(store / "train", target_is_directory=True)
    (root / "val").symlink_to(store / "val", target_is_directory=True)
    (store / "train" / "cat" / "loop").symlink_to(store / "train", target_is_directory=True)
    extra = tmp_path / "elsewhere.png"
    write_images(tmp_path / "x", 1)
    (tmp_path / "x" / "img0.png").rename(extra)
    (store / "train" / "dog" / "linked.png").symlink_to(extra)
    (store / "train" / "dog" / "broken.png").symlink_to(tmp_path / "gone.png")
    assert detect_modality(root) == "image"
    data = load_data(root)
    # the link to a parent folder is not followed (a loop), so no file is read twice
    assert len(data.train) == 8 + 9 and len(data.val) == 6


def test_every_suffix_pillow_reads_is_used(tmp_path):
    suffixes = get_modality("image").suffixes
    assert {".jfif", ".jpe", ".tga", ".ppm", ".webp", ".tif"} <= suffixes
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for suffix in (".jfif", ".jpe", ".tga", ".ppm", ".PNG", ".webp"):
            pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"x{suffix}")
    data = load_data(tmp_path)
    assert _count(data) == 12
    _no_data_warning(data)


def test_unused_files_are_named_in_one_grouped_warning(tmp_path):
    for seed, cls in enumerate(("a", "b")):
        write_images(tmp_path / cls, 6, seed=seed)
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "b" / "readme.txt").write_text("x")
    (tmp_path / "b" / "labels.json").write_text("{}")
    (tmp_path / "b" / "LICENSE").write_text("x")
    data = load_data(tmp_path)
    with pytest.warns(DataWarning) as caught:
        check_data(data)
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "not used: 4 file(s)" in text
    assert "2 not image file(s) (.txt)" in text and "notes.txt" in text and "readme.txt" in text
    assert "1 not image file(s) (.json)" in text and "1 not image file(s) (no suffix)" in text


@pytest.mark.parametrize("layout, found", [
    ({"a/x.txt": 3, "b/y.txt": 3}, "6 .txt"),
    ({"a/x.png": 3, "b/y.wav": 3}, "3 .png, 3 .wav"),
    ({"a/.hidden.png": 1}, "no files"),
])
def test_modality_detection_says_what_it_found_and_names_the_flag(tmp_path, layout, found):
    for name, n in layout.items():
        for i in range(n):
            path = tmp_path / name.replace(".", f"{i}.", 1) if n > 1 else tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    with pytest.raises(DataError, match=rf"cannot tell the modality .*{found}.*name it with "
                                        "modality: image, text or audio"):
        detect_modality(tmp_path)


def _tone(seconds=0.5, rate=16000, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


AUDIO_FORMATS = [  # (suffix, format, subtype, rate): libsndfile writes every one of these
    (".wav", "WAV", "PCM_U8", 16000), (".wav", "WAV", "ULAW", 16000),
    (".flac", "FLAC", "PCM_24", 16000), (".ogg", "OGG", "VORBIS", 16000),
    (".opus", "OGG", "OPUS", 48000), (".mp3", "MP3", "MPEG_LAYER_III", 16000),
    (".aiff", "AIFF", "PCM_16", 16000), (".aif", "AIFF", "FLOAT", 16000),
    (".au", "AU", "PCM_16", 16000), (".caf", "CAF", "PCM_16", 16000),
    (".w64", "W64", "PCM_16", 16000), (".wav", "RF64", "PCM_16", 16000),
]


def test_case_every_format_the_audio_decoder_reads_is_used(tmp_path):
    for cls, freq in (("low", 220.0), ("high", 1760.0)):
        (tmp_path / cls).mkdir()
        for i, (suffix, fmt, subtype, rate) in enumerate(AUDIO_FORMATS):
            soundfile.write(tmp_path / cls / f"{i}_{subtype}{suffix}", _tone(1.0, rate, freq),
                            rate, format=fmt, subtype=subtype)
    assert detect_modality(tmp_path) == "audio"
    data = load_data(tmp_path)
    assert _count(data) == 2 * len(AUDIO_FORMATS)
    _no_data_warning(data)


def test_case_a_folder_of_mp3s_is_audio(tmp_path):
    for cls in ("yes", "no"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(3):
            soundfile.write(tmp_path / "train" / cls / f"{i}.mp3", _tone(1.0), 16000,
                            format="MP3")
    assert detect_modality(tmp_path) == "audio"
    assert _count(load_data(tmp_path)) == 6


# --- 3. tables by the csv and json modules ------------------------------------------------

SEPARATORS = ["\u2028", "\u2029", "\u0085", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


def _reviews(n: int = 40) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        sep = SEPARATORS[i % len(SEPARATORS)] if i % 3 == 0 else ""
        rows.append((f"review {i}, good{sep}part two", "pos" if i % 2 else "neg"))
    return rows


def _write_table(path, rows, delimiter=",", bom=False, newline="\n", header=("text", "label")):
    import csv
    import io
    import json

    if path.suffix == ".jsonl":
        body = "".join(json.dumps(dict(zip(header, r, strict=True)), ensure_ascii=False) + newline
                       for r in rows)
    else:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
        body = out.getvalue()
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + body.encode("utf-8"))


@pytest.mark.parametrize("name, delimiter", [("r.csv", ","), ("r.tsv", "\t"), ("r.jsonl", None)])
def test_case_texts_holding_unicode_line_separators_stay_one_row(tmp_path, name, delimiter):
    rows = _reviews(200)
    _write_table(tmp_path / name, rows, delimiter or ",")
    read = read_text_table(tmp_path / name)["train"]
    assert len(read) == 200
    assert read[0][0] == "review 0, good\u2028part two"
    assert sorted(t for t, _ in read) == sorted(t for t, _ in rows)


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_the_delimiter_is_sniffed(tmp_path, delimiter, suffix):
    rows = [(f"text {i}; with, some | marks", "a" if i % 2 else "b") for i in range(10)]
    _write_table(tmp_path / f"t{suffix}", rows, delimiter)
    read = read_text_table(tmp_path / f"t{suffix}")["train"]
    assert [t for t, _ in read] == [t for t, _ in rows]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_error_lines_are_physical_lines(tmp_path, newline):
    rows = [("one", "a"), ("two\nlines", "b"), ("x\u2028y", "a"), ("three", "")]
    _write_table(tmp_path / "t.csv", rows, newline=newline)
    with pytest.raises(DataError, match=r"t\.csv:6: empty label"):
        read_text_table(tmp_path / "t.csv")
    _write_table(tmp_path / "t.jsonl", rows, newline=newline)
    with pytest.raises(DataError, match=r"t\.jsonl:4: empty label"):
        read_text_table(tmp_path / "t.jsonl")


def _path_table(tmp_path, kind: str, *, bom: bool, newline: str, delimiter=","):
    folder = tmp_path / kind
    rows = []
    for cls in ("x", "y"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            if kind == "images":
                file = folder / cls / f"{i}.png"
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(file)
            else:
                file = folder / cls / f"{i}.flac"
                soundfile.write(file, _tone(0.2, freq=300 + 50 * i), 16000)
            rows.append((f"{kind}/{cls}/{file.name}", cls, "val" if i == 4 else "train"))
    name = f"{kind}-{int(bom)}-{len(newline)}-{ord(delimiter)}.csv"
    _write_table(tmp_path / name, rows, delimiter, bom, newline, ("path", "label", "split"))
    return tmp_path / name


@pytest.mark.parametrize("kind, modality", [("images", "image"), ("audio", "audio")])
@pytest.mark.parametrize("delimiter", [",", ";"])
def test_case_a_bom_path_table_behaves_exactly_like_its_twin(tmp_path, kind, modality, delimiter):
    plain = _path_table(tmp_path, kind, bom=False, newline="\n", delimiter=delimiter)
    bom = _path_table(tmp_path, kind, bom=True, newline="\r\n", delimiter=delimiter)
    assert detect_modality(plain) == detect_modality(bom) == modality
    a, b = load_data(plain), load_data(bom)
    assert a.classes == b.classes == ["x", "y"]
    assert a.train.paths == b.train.paths and a.val.paths == b.val.paths
    names, _ = collect_inputs(modality, [bom], [], text_column="text", model_dir="m")
    assert len(names) == 10


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t"), (".jsonl", ",")])
def test_bom_text_table_is_read_like_its_twin(tmp_path, suffix, delimiter):
    _write_table(tmp_path / f"plain{suffix}", _reviews(), delimiter, bom=False)
    _write_table(tmp_path / f"bom{suffix}", _reviews(), delimiter, bom=True, newline="\r\n")
    assert detect_modality(tmp_path / f"bom{suffix}") == "text"
    assert (read_text_table(tmp_path / f"bom{suffix}")
            == read_text_table(tmp_path / f"plain{suffix}"))


@pytest.mark.parametrize("encoding, bom, name", [
    ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16"), ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16"),
    ("utf-16-le", b"", "UTF-16"), ("utf-32-le", codecs.BOM_UTF32_LE, "UTF-32"),
])
def test_utf16_tables_get_one_line_saying_how_to_save_as_utf8(tmp_path, encoding, bom, name):
    text = "text,label\r\ngood film,pos\r\nbad film,neg\r\n"
    for suffix in (".csv", ".tsv", ".jsonl"):
        path = tmp_path / f"t{suffix}"
        path.write_bytes(bom + text.encode(encoding))
        for read in (detect_modality, read_text_table):
            with pytest.raises(DataError) as info:
                read(path)
            message = str(info.value)
            assert "\n" not in message and f"saved as {name}" in message
            assert "save it as UTF-8" in message and str(path) in message


def test_a_row_with_more_fields_than_the_header_names_the_line(tmp_path):
    (tmp_path / "ok.csv").write_text("text,label\ngood,pos,,\nbad,neg,\n")  # Excel's empties
    assert read_text_table(tmp_path / "ok.csv")["train"] == [("good", "pos"), ("bad", "neg")]
    (tmp_path / "t.csv").write_text("text,label\ngood,pos\nbad, really bad,neg\n")
    with pytest.raises(DataError, match=r"t\.csv:3: 3 fields but the header has 2"):
        read_text_table(tmp_path / "t.csv")


def test_walk_survives_unreadable_folders(tmp_path):
    for seed, cls in enumerate(("a", "b")):
        write_images(tmp_path / cls, 4, seed=seed)
    locked = tmp_path / "a" / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    try:
        assert _count(load_data(tmp_path)) == 8
    finally:
        os.chmod(locked, 0o755)
