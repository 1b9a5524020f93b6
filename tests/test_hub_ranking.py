"""Text and audio candidates ranked from the Hugging Face Hub's metadata (#39), with a fake
``HfApi``: no network is used."""

from __future__ import annotations

import json
import threading

import pytest
from huggingface_hub import ModelInfo
from typer.testing import CliRunner

import autotransfer.contract.hub_ranking as hub_ranking
from autotransfer.cli.app import app
from autotransfer.contract.collect import get_ranking_entries
from autotransfer.contract.ranking import rank
from autotransfer.errors import HubUnreachable


def _info(repo: str, downloads: int, params: int | None, *tags: str) -> ModelInfo:
    safetensors = None if params is None else {"parameters": {"F32": params}, "total": params}
    return ModelInfo(id=repo, downloads=downloads, tags=list(tags), safetensors=safetensors)


LISTED = {
    "sentence-similarity": [
        _info("sentence-transformers/all-MiniLM-L6-v2", 90_000_000, 22_713_216, "bert",
              "license:apache-2.0"),
        _info("BAAI/bge-small-en-v1.5", 5_000_000, 33_360_000, "bert", "license:mit"),
        _info("someone/unknown-arch", 80_000_000, 10_000_000, "mystery-net",
              "license:apache-2.0"),  # no layer groups here: left out
    ],
    "feature-extraction": [
        _info("BAAI/bge-small-en-v1.5", 5_000_000, 33_360_000, "bert", "license:mit"),
        _info("Qwen/Qwen3-Embedding-8B", 3_000_000, 7_567_295_488, "qwen3",
              "license:apache-2.0"),
    ],
    "fill-mask": [
        _info("FacebookAI/roberta-base", 12_000_000, 124_645_632, "roberta", "license:mit"),
        _info("google-bert/bert-base-uncased", 60_000_000, None, "bert",
              "license:apache-2.0"),  # no safetensors metadata: params unknown
        _info("nc/bert-nc", 8_000_000, 10_000_000, "bert", "license:cc-by-nc-4.0"),
    ],
    "automatic-speech-recognition": [
        _info("openai/whisper-large-v3", 7_000_000, 1_543_490_560, "whisper", "license:apache-2.0"),
        _info("openai/whisper-tiny.en", 400_000, 37_760_640, "whisper", "license:apache-2.0"),
        _info("openai/whisper-base", 600_000, 72_593_920, "whisper", "license:apache-2.0"),
    ],
    "audio-classification": [
        _info("MIT/ast-finetuned-audioset-10-10-0.4593", 900_000, 86_600_000,
              "audio-spectrogram-transformer", "license:bsd-3-clause"),
    ],
}


class FakeHub:
    """``HfApi``'s two calls, answered from ``LISTED``; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def list_models(self, **kwargs):
        self.asked.append(kwargs)
        return iter(LISTED.get(kwargs["pipeline_tag"], [])[: kwargs["limit"]])

    def model_info(self, repo, **kwargs):
        self.asked.append({"model_info": repo, **kwargs})
        return next(i for infos in LISTED.values() for i in infos if i.id == repo)


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_ranking, "api", lambda: fake)
    return fake


def test_text_ranks_by_downloads_within_the_bounds_and_the_packaged_copy_stands_for_its_twin(
        hub):
    entries = get_ranking_entries("text", online=True)
    ranked = rank(entries, 5)
    # MiniLM's packaged copy takes its Hub twin's downloads and loads here, so it stands for it
    assert [e.id for e in ranked] == [
        "packaged/all-MiniLM-L6-v2", "hf-text/google-bert/bert-base-uncased",
        "hf-text/FacebookAI/roberta-base", "hf-text/nc/bert-nc", "hf-text/BAAI/bge-small-en-v1.5"]
    assert ranked[0].loads_offline and ranked[0].score == 90_000_000
    assert all(e.signal == hub_ranking.SIGNAL for e in ranked)
    assert "hf-text/someone/unknown-arch" not in {e.id for e in entries}  # no layer groups
    bounded = rank(entries, 5, max_params=100_000_000, license="apache")
    # bert-base has no safetensors count (dropped by a bound), the NC licence is filtered out
    assert [e.id for e in bounded] == ["packaged/all-MiniLM-L6-v2"]
    asked = [a for a in hub.asked if "pipeline_tag" in a]
    assert {a["pipeline_tag"] for a in asked} == {"sentence-similarity", "feature-extraction",
                                                  "fill-mask"}
    assert all(a["sort"] == "downloads" and a["gated"] is False and a["limit"] == 100
               and set(a["expand"]) >= {"downloads", "safetensors", "tags"} for a in asked)


def test_audio_ranks_speech_and_audio_classifiers(hub):
    ranked = rank(get_ranking_entries("audio", online=True), 3, max_params=100_000_000)
    assert [e.id for e in ranked] == ["hf-audio/MIT/ast-finetuned-audioset-10-10-0.4593",
                                      "packaged/whisper-base", "packaged/whisper-tiny.en"]
    assert ranked[0].license == "bsd-3-clause" and ranked[0].params == 86_600_000


def test_cli_online_shows_a_progress_line_and_downloads(hub):
    run = CliRunner().invoke(app, ["backbones", "--modality", "text", "--rank", "2", "--online",
                                   "--json"])
    assert run.exit_code == 0, run.output
    assert [r["id"] for r in json.loads(run.stdout)] == [
        "packaged/all-MiniLM-L6-v2", "hf-text/google-bert/bert-base-uncased"]
    assert "reading the current tables and the Hugging Face Hub's text metadata" in run.stderr
    assert "read 7 text candidates online in" in run.stderr


def test_offline_asks_nothing_and_says_so(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = CliRunner().invoke(app, ["backbones", "--modality", "text", "--rank", "3", "--online"])
    assert run.exit_code == 0, run.output
    assert hub.asked == []
    assert "HF_HUB_OFFLINE=1: nothing asked online" in run.stderr
    assert "packaged/all-MiniLM-L6-v2" in run.stdout and "hf-text/" not in run.stdout


def test_a_network_error_is_one_line(monkeypatch, capsys):
    from autotransfer.cli.main import main

    class Down:
        def list_models(self, **kwargs):
            raise ConnectionError("Failed to resolve 'huggingface.co'\nmore lines")

        model_info = list_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_ranking, "api", Down)
    with pytest.raises(SystemExit) as stop:
        main(["backbones", "--modality", "text", "--rank", "3", "--online"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: the Hugging Face Hub did not answer")
    assert "ConnectionError: Failed to resolve 'huggingface.co'" in err[-1]
    assert "HF_HUB_OFFLINE=1 ranks the packaged candidates" in err[-1]
    assert not any("plugin" in line for line in err)  # not reported as a broken plugin


def test_a_hub_that_does_not_answer_fails_within_the_timeout(monkeypatch):
    release = threading.Event()

    class Hanging:
        def list_models(self, **kwargs):
            release.wait(30)
            return iter(())

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_ranking, "api", Hanging)
    query = hub_ranking.HubQuery(("fill-mask",), frozenset({"bert"}))
    try:
        with pytest.raises(HubUnreachable, match="did not answer list_models for text "
                                                 r"\(fill-mask\) within 0.2 s"):
            hub_ranking.hub_ranking_entries("hf-text", "text", query, timeout=0.2)
    finally:
        release.set()


def test_a_ranked_text_space_online_reads_the_hub_and_offline_keeps_the_packaged(hub, capsys):
    from autotransfer.space.schema import parse_space
    from autotransfer.study.ranked import expand

    rule = parse_space({"backbones": {"rank": 2, "online": True, "max_params": "200M"},
                        "epochs": 1}).backbones
    said: list[str] = []
    ids, note = expand(rule, "text", say=said.append)
    assert ids == ["packaged/all-MiniLM-L6-v2", "hf-text/FacebookAI/roberta-base"]
    assert said and "Hugging Face Hub's text metadata" in said[0]
    hub.asked.clear()
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"  # restored by the fixture's monkeypatch
    ids, note = expand(rule, "text")
    assert ids == ["packaged/all-MiniLM-L6-v2"] and hub.asked == []
    assert "that load here (HF_HUB_OFFLINE=1)" in note
