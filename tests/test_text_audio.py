"""Text and audio data: readers, bad input, and real transfer (MiniLM, Whisper tiny.en)."""

import json

import numpy as np
import pytest
import soundfile
import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.data import AudioPreprocess, check_data, detect_modality, load_audio, load_data
from autotransfer.errors import DataError
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import HYPERPARAMETERS, defaults

DEFAULTS = defaults()


def test_text_csv_tsv_jsonl_and_split_files_are_read_with_configurable_columns(tmp_path):
    rows = [("good film", "pos"), ("bad film", "neg")] * 5
    (tmp_path / "a.csv").write_text("review,stars\n" + "".join(f"{t},{y}\n" for t, y in rows))
    data = load_data(tmp_path / "a.csv", text_column="review", label_column="stars")
    assert data.modality == "text" and data.classes == ["neg", "pos"]
    assert len(data.train) + len(data.val) == 10 and data.train.texts
    (tmp_path / "b.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    assert load_data(tmp_path / "b.tsv").modality == "text"
    folder = tmp_path / "split"
    folder.mkdir()
    for split in ("train", "val", "test"):
        lines = [json.dumps({"text": t, "label": y}) for t, y in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines))
    data = load_data(folder)
    assert data.modality == "text" and len(data.test) == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"text,label\nfine,a\n,b\n", r"x\.csv:3: empty text"),
        (b"words,label\nfine,a\n", r"x\.csv: missing column 'text'"),
        (b"text,label\none,a\ntwo,a\n", r"single class 'a'"),
        (b"text,label\nfine,a\ncaf\xe9,b\n", r"x\.csv:3: not UTF-8"),
    ],
)
def test_bad_text_is_one_line_naming_file_and_row(tmp_path, content, message):
    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_data(tmp_path / "x.csv", modality="text")
    assert "\n" not in str(info.value)


def test_audio_is_mixed_to_mono_resampled_and_cut_or_padded(tmp_path):
    t = np.arange(44100 * 3) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1).astype(np.float32)
    soundfile.write(tmp_path / "long.flac", stereo, 44100)
    clip = load_audio(tmp_path / "long.flac", 16000, 16000)  # 3 s at 44.1 kHz -> 1 s at 16 kHz
    assert clip.shape == (16000,) and abs(np.abs(clip).max() - 0.5) < 0.05
    soundfile.write(tmp_path / "short.wav", np.ones(800, np.float32) * 0.1, 8000)
    padded = load_audio(tmp_path / "short.wav", 16000, 16000)
    assert padded[:1500].mean() == pytest.approx(0.1, abs=0.02) and not padded[2000:].any()


def test_bad_audio_is_one_line_naming_the_file(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            soundfile.write(tmp_path / cls / f"{i}.wav", np.zeros(1600, np.float32), 16000)
    assert detect_modality(tmp_path) == "audio"
    (tmp_path / "a" / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DataError, match=r"broken\.wav \(not readable audio"):
        check_data(load_data(tmp_path))
    (tmp_path / "a" / "broken.wav").unlink()
    soundfile.write(tmp_path / "a" / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match=r"empty\.wav \(empty audio \(no samples\)\)"):
        check_data(load_data(tmp_path))
    with pytest.raises(DataError, match=r"empty\.wav: empty audio \(no samples\)"):
        AudioPreprocess(None, "input_values", 16000).clips([tmp_path / "a" / "empty.wav"])


@pytest.mark.slow
def test_minilm_fine_tune_beats_chance_on_rotten_tomatoes(rotten_tomatoes):
    data = load_data(rotten_tomatoes)
    assert data.modality == "text" and data.classes == ["fresh", "rotten"]
    backbone = get_backbone("packaged/all-MiniLM-L6-v2").load()
    params = {**DEFAULTS, "max_length": 48, "lr": 1e-4, "head_lr_multiplier": 10.0,
              "freeze_fraction": 0.5, "batch_size": 16}
    result = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0).fit(2)
    assert result.n_frozen_groups == 3
    assert result.history[-1].accuracy >= 0.6  # balanced: chance is 0.5


@pytest.mark.slow
def test_whisper_tiny_recognises_keywords_from_unheard_accents(keywords):
    data = load_data(keywords)
    assert data.modality == "audio" and len(data.classes) == 8
    scores = {}
    for pretrained in (True, False):
        backbone = get_backbone("packaged/whisper-tiny.en").load(pretrained=pretrained)
        params = {**DEFAULTS, "clip_seconds": 1.0, "lr": 3e-4, "freeze_fraction": 0.0,
                  "batch_size": 16}
        trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0)
        scores[pretrained] = trainer.fit(1).history[-1].accuracy
    assert scores[True] >= 0.8 > scores[False] + 0.3  # chance is 0.125


# -- the real CLI on text and audio data, as a user runs it ------------------------------------

TEXT_SPACE = """
backbones: [packaged/all-MiniLM-L6-v2]
epochs: 1
pruner: none
params:
  freeze_fraction: {type: float, low: 0.5, high: 1.0}
  lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  max_length: 32
  batch_size: 16
"""

AUDIO_SPACE = """
backbones: [packaged/whisper-tiny.en]
epochs: 1
pruner: none
params:
  lr: 3.0e-4
  freeze_fraction: {type: float, low: 0.0, high: 0.5}
  clip_seconds: 1.0
  batch_size: 16
"""


@pytest.mark.parametrize(
    ("fixture", "space", "modality", "floor"),
    [("rotten_tomatoes", TEXT_SPACE, "text", 0.55), ("keywords", AUDIO_SPACE, "audio", 0.6)],
)
def test_cli_search_on_real_text_and_audio(request, tmp_path, fixture, space, modality, floor):
    import subprocess
    import sys

    import optuna
    import yaml

    data = request.getfixturevalue(fixture)
    (tmp_path / "space.yaml").write_text(space)
    run = subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", "search", str(data),
         "--space", "space.yaml", "--trials", "2", "--storage", "sqlite:///s.db", "--study",
         modality, "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name=modality, storage=f"sqlite:///{tmp_path}/s.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["val_score"] == pytest.approx(study.best_value) and best["val_score"] > floor
    assert set(best["params"]) == {n for n, h in HYPERPARAMETERS.items()
                                   if h.modality in (None, modality) and h.method is None}
