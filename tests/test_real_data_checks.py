"""Real-world data (issue 15), part 3: labels, the checks before trial 1, ``inspect``.

Every fixture is built here; handed cases are one test each, other instances of each kind too.
"""

import json
import unicodedata

import numpy as np
import pytest
import soundfile
import yaml

from autotransfer.cli import main
from autotransfer.data import (
    AudioPreprocess,
    DataWarning,
    check_data,
    load_data,
    normalize_label,
    sort_classes,
)
from autotransfer.errors import DataError
from conftest import write_images


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# --- 4. labels as the user means them ---------------------------------------------------------


def test_case_numeric_labels_written_three_ways_are_one_class(tmp_path):
    spellings = [2, 2.0, "2", 1, 1.0, "1", 0, "0.0", 0.0]
    _jsonl(tmp_path / "mixed.jsonl",
           [{"text": f"text {i}", "label": spellings[i % 9]} for i in range(90)])
    data = load_data(tmp_path / "mixed.jsonl")
    assert data.classes == ["0", "1", "2"] and len(data.train) + len(data.val) == 90


def test_case_split_files_with_int_and_float_labels_agree(tmp_path):
    _jsonl(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": i % 3} for i in range(30)])
    _jsonl(tmp_path / "val.jsonl", [{"text": f"v{i}", "label": float(i % 3)} for i in range(9)])
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(f"x{i},{i % 3}.00\n"
                                                                for i in range(6)))
    data = load_data(tmp_path)
    assert data.classes == ["0", "1", "2"] and len(data.val) == 9 and len(data.test) == 6


@pytest.mark.parametrize("labels, expected", [
    (["-1", "0", "1"], ["-1", "0", "1"]),
    ([str(i) for i in range(1, 11)], [str(i) for i in range(1, 11)]),
    (["0.5", "0.25", "1", "2.5"], ["0.25", "0.5", "1", "2.5"]),
    (["10", "9", "b"], ["10", "9", "b"]),  # not all numbers: sorted as text
])
def test_case_numeric_classes_sort_as_numbers(tmp_path, labels, expected):
    rows = "".join(f"text {i} {label},{label}\n" for i in range(4) for label in labels)
    (tmp_path / "t.csv").write_text("text,label\n" + rows)
    assert load_data(tmp_path / "t.csv").classes == expected


def test_normalize_label_rules():
    assert [normalize_label(x) for x in (1, 1.0, "1", "1.0", " 1 ", "+1", "1e0")] == ["1"] * 7
    assert normalize_label("007") == "007" and normalize_label(True) == "true"
    assert normalize_label("nan") == "nan" and normalize_label(-0.5) == "-0.5"
    assert sort_classes(["b", "a"]) == ["a", "b"]


def test_nfd_folder_names_from_macos_are_the_same_class_as_nfc(tmp_path):
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    write_images(tmp_path / "train" / nfd, 6, seed=1)
    write_images(tmp_path / "train" / "thé", 6, seed=2)
    write_images(tmp_path / "val" / nfc, 2, seed=3)
    write_images(tmp_path / "val" / unicodedata.normalize("NFD", "thé"), 2, seed=4)
    data = load_data(tmp_path)
    assert data.classes == ["café", "thé"] and len(data.val) == 4
    assert all(unicodedata.is_normalized("NFC", c) for c in data.classes)
    labels = [nfd, nfc, "thé", unicodedata.normalize("NFD", "thé")]
    (tmp_path / "labels.csv").write_text(
        "text,label\n" + "".join(f"t{i},{labels[i % 4]}\n" for i in range(12)))
    assert load_data(tmp_path / "labels.csv").classes == ["café", "thé"]


def test_labels_differing_only_in_case_or_spaces_are_warned_with_both_spellings(tmp_path):
    rows = "".join(f"t{i},{label}\n" for i, label in
                   enumerate(["Cat", "cat", " dog", "dog", "dog ", "bird"] * 4))
    (tmp_path / "t.csv").write_text("text,label\n" + rows)
    data = load_data(tmp_path / "t.csv")
    assert data.classes == ["Cat", "bird", "cat", "dog"]
    with pytest.warns(DataWarning) as caught:
        check_data(data)
    text = str(caught[0].message)
    assert "classes 'Cat' and 'cat' differ only in letter case" in text
    assert "' dog'" in text and "'dog '" in text and "class 'dog'" in text


def test_numeric_classes_keep_numeric_order_in_best_yaml_and_predict(tmp_path):
    """best.yaml, the trained model and predict all carry the classes as numbers sort."""
    from autotransfer.model.predict import predict
    from autotransfer.model.refit import train
    from autotransfer.study.study import search

    for seed, cls in enumerate(("1", "2", "10")):
        write_images(tmp_path / "data" / cls, 5, seed=seed)
    (tmp_path / "space.yaml").write_text(
        "backbones: [packaged/mobilenetv2_100]\nepochs: 1\n"
        "params: {batch_size: 8, image_size: 32, freeze_fraction: 1.0}\n")
    result = search(tmp_path / "data", tmp_path / "space.yaml", trials=1, device="cpu",
                    storage=f"sqlite:///{tmp_path / 's.db'}", out=tmp_path / "out")
    best = yaml.safe_load(result.best_path.read_text())
    assert best["classes"] == ["1", "2", "10"]
    train(result.best_path, out=tmp_path / "model", device="cpu")
    found = predict(tmp_path / "model", [tmp_path / "data" / "10"], device="cpu")
    assert list(found[0].probabilities) == ["1", "2", "10"]


# --- 5. checks before trial 1, in one report ----------------------------------------------------


def _tone(seconds=1.0, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _bad_clips(folder):
    """Unusable clips of every kind: header-only, not audio, NaN, inf, absurd."""
    soundfile.write(folder / "header_only.wav", np.zeros(0, np.float32), 16000)
    (folder / "page.wav").write_text("<!DOCTYPE html><html>404 Not Found</html>")
    for name, value in (("nan", np.nan), ("inf", -np.inf), ("huge", 1e29)):
        wave = _tone()
        wave[100] = value
        soundfile.write(folder / f"{name}.wav", wave, 16000, subtype="FLOAT")
    return {"header_only.wav", "page.wav", "nan.wav", "inf.wav", "huge.wav"}


def _fine_odd_clips(folder):
    """Clips that look odd but are fine: short, long, truncated, silent."""
    soundfile.write(folder / "one_sample.wav", np.array([0.1], np.float32), 16000)
    soundfile.write(folder / "ten_ms.wav", _tone(0.01), 16000)
    soundfile.write(folder / "long.wav", _tone(12.0), 16000)
    soundfile.write(folder / "silence.wav", np.zeros(16000, np.float32), 16000)
    soundfile.write(folder / "full.wav", _tone(1.0), 16000)
    raw = (folder / "full.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(raw[: len(raw) // 3])
    (folder / "full.wav").unlink()
    return {"one_sample.wav", "ten_ms.wav", "long.wav", "silence.wav", "truncated.wav"}


def _clip_folders(root, n_good: int):
    for cls, freq in (("high", 1760.0), ("low", 220.0)):
        (root / cls).mkdir(parents=True)
        for i in range(n_good):
            soundfile.write(root / cls / f"{cls}_{i}.wav", _tone(freq=freq), 16000)


def test_case_unusable_clips_are_all_named_in_one_error_before_trial_1(tmp_path):
    _clip_folders(tmp_path, 12)
    bad = _bad_clips(tmp_path / "low")
    fine = _fine_odd_clips(tmp_path / "low")
    data = load_data(tmp_path)
    with pytest.raises(DataError) as info:
        check_data(data)
    message = str(info.value)
    assert "\n" not in message and "5 of 34 audio clips are unusable" in message
    for name in bad:
        assert name in message
    for name in fine:
        assert name not in message
    for reason in ("empty audio", "not readable audio", "NaN or infinite", "absurd sample"):
        assert reason in message


def test_a_few_unusable_clips_are_skipped_and_never_reach_a_model(tmp_path):
    _clip_folders(tmp_path, 60)
    bad = _bad_clips(tmp_path / "low")
    fine = _fine_odd_clips(tmp_path / "high")
    data = load_data(tmp_path)
    with pytest.warns(DataWarning, match=r"skipped 5 unusable audio clip\(s\)"):
        report = check_data(data)
    assert {p.name for p, _ in report.skipped} == bad
    kept = {p.name for s in data.splits().values() for p in s.paths}
    assert not kept & bad and fine <= kept
    extractor = lambda clips, **_: {"input_values": np.stack(clips)}  # noqa: E731
    for split in ("train", "val"):
        x, _ = AudioPreprocess(extractor, "input_values", 16000).encode(data, split)
        assert np.isfinite(x["input_values"].numpy()).all()
        assert np.abs(x["input_values"].numpy()).max() <= 1.0


def test_predict_and_decoding_refuse_non_finite_clips_by_name(tmp_path):
    wave = _tone()
    wave[5] = np.nan
    soundfile.write(tmp_path / "x.flac", _tone(), 16000)
    soundfile.write(tmp_path / "nan64.wav", wave.astype(np.float64), 16000, subtype="DOUBLE")
    with pytest.raises(DataError, match=r"nan64\.wav: holds NaN or infinite samples"):
        AudioPreprocess(None, "input_values", 16000).clips([tmp_path / "nan64.wav"])
    (tmp_path / "photo.wav").write_bytes(b"\xff\xd8\xff\xe0JFIF")
    with pytest.raises(DataError, match=r"photo\.wav: not readable audio"):
        AudioPreprocess(None, "input_values", 16000).clips([tmp_path / "photo.wav"])


def test_clips_silent_after_the_stereo_downmix_are_named(tmp_path):
    _clip_folders(tmp_path, 6)
    wave = _tone()
    soundfile.write(tmp_path / "low" / "phase.wav", np.stack([wave, -wave], 1), 16000)
    soundfile.write(tmp_path / "low" / "stereo_ok.wav", np.stack([wave, wave], 1), 16000)
    with pytest.warns(DataWarning, match=r"1 clip\(s\) silent after the stereo downmix.*"
                                         r"phase\.wav"):
        report = check_data(load_data(tmp_path))
    assert not report.skipped and "stereo_ok" not in " ".join(report.warnings)


def test_a_class_missing_from_validation_is_named(tmp_path):
    for cls in ("a", "b", "c"):
        write_images(tmp_path / "train" / cls, 5)
    for cls in ("a", "b"):
        write_images(tmp_path / "val" / cls, 2)
    with pytest.warns(DataWarning, match=r"validation split holds no sample of class\(es\) 'c'"):
        check_data(load_data(tmp_path))


def test_imbalance_beyond_ten_to_one_suggests_macro_f1_in_the_same_report(tmp_path):
    write_images(tmp_path / "many", 56, seed=1)
    write_images(tmp_path / "few", 5, seed=2)
    (tmp_path / "few" / "notes.txt").write_text("x")
    with pytest.warns(DataWarning) as caught:
        check_data(load_data(tmp_path))
    assert len(caught) == 1  # one report
    text = str(caught[0].message)
    assert "imbalanced beyond 10:1" in text and "few 4, many 45" in text
    assert "metric: macro_f1" in text and "notes.txt" in text


def test_balanced_data_gets_no_warning(tmp_path):
    import warnings

    for cls in ("a", "b"):
        write_images(tmp_path / cls, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        check_data(load_data(tmp_path))


# --- 6. autotransfer inspect ------------------------------------------------------------------


def test_inspect_json_says_what_a_search_would_read(tmp_path, capsys):
    write_images(tmp_path / "data" / "train" / "2", 8, seed=1)
    write_images(tmp_path / "data" / "train" / "10", 8, seed=2)
    write_images(tmp_path / "data" / "val" / "2", 3, seed=3)
    write_images(tmp_path / "data" / "val" / "10", 3, seed=4)
    (tmp_path / "data" / "train" / "2" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "data" / "train" / "10" / "._img0.png").write_bytes(b"apple")
    main(["inspect", str(tmp_path / "data"), "--json"])
    found = json.loads(capsys.readouterr().out)
    assert found["modality"] == "image" and found["classes"] == ["2", "10"]
    assert found["counts"] == {"train": {"2": 8, "10": 8}, "val": {"2": 3, "10": 3}}
    assert [s["path"].endswith("broken.png") for s in found["skipped"]] == [True]
    assert "cannot identify image file" in found["skipped"][0]["reason"]
    assert isinstance(found["warnings"], list) and found["error"] is None


def test_inspect_matches_what_search_reads(tmp_path):
    import autotransfer

    for seed, cls in enumerate(("x", "y")):
        write_images(tmp_path / cls, 12, seed=seed)
    (tmp_path / "y" / "bad.png").write_bytes(b"nope")
    found = autotransfer.inspect(tmp_path, modality="image")
    data = load_data(tmp_path)
    with pytest.warns(DataWarning):
        check_data(data)
    for name, split in data.splits().items():
        assert sum(found.counts[name].values()) == len(split)


def test_inspect_text_with_columns_and_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "r.csv").write_text("review;stars\n" + "".join(
        f"film {i};{i % 3 + 1}.0\n" for i in range(12)))
    main(["inspect", str(tmp_path / "r.csv"), "--text-column", "review",
          "--label-column", "stars", "--json"])
    found = json.loads(capsys.readouterr().out)
    assert found["modality"] == "text" and found["classes"] == ["1", "2", "3"]
    (tmp_path / "u.csv").write_bytes("text,label\r\na,b\r\n".encode("utf-16"))
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(tmp_path / "u.csv")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1 and "\n" not in err and "saved as UTF-16" in err


def test_inspect_reports_then_fails_when_search_would_stop(tmp_path, capsys):
    _clip_folders(tmp_path, 4)
    _bad_clips(tmp_path / "low")
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(tmp_path)])
    out = capsys.readouterr()
    assert info.value.code == 1 and "audio clips are unusable" in out.err
    assert "skipped" in out.out and "nan.wav" in out.out


def test_inspect_json_prints_its_object_for_unreadable_data_too(tmp_path, capsys):
    # a script that parses stdout gets the one object, with "error", whatever went wrong
    (tmp_path / "u.csv").write_bytes("text,label\r\na,b\r\n".encode("utf-16"))
    for data in (tmp_path / "u.csv", tmp_path / "missing"):
        with pytest.raises(SystemExit) as info:
            main(["inspect", str(data), "--json"])
        out = capsys.readouterr()
        found = json.loads(out.out)
        assert info.value.code == 1 and found["error"] and found["classes"] == []
        assert out.err.strip().startswith("error: ") and "\n" not in out.err.strip()
