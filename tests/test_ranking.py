"""Ranking candidates from published tables before any download (#39)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autotransfer.cli.app import app
from autotransfer.cli.main import main
from autotransfer.contract.collect import get_ranking_entries
from autotransfer.contract.ranking import RankingEntry, parse_count, rank
from autotransfer.errors import OptionError
from autotransfer.plugin import hookimpl
from autotransfer.testing import (
    ConformanceError,
    FakeZoo,
    check_ranking,
    registered_plugin,
)


class RankedZoo(FakeZoo):
    """A third-party zoo that offers ranking metadata for its tiny CNN."""

    def __init__(self, score: float = 99.0, speed: float = 1e4, source: str = "fake.csv"):
        super().__init__()
        self.score, self.speed, self.source = score, speed, source

    @hookimpl
    def register_ranking(self, register, modality, online):
        if modality == "image":
            register(RankingEntry(
                "fake/tiny-cnn", "image", self.score, "ImageNet-1k top-1 %", "fake paper",
                params=1000, throughput={"cpu": self.speed},
                throughput_source={"cpu": self.source}, loads_offline=True))


@pytest.fixture
def ranked_zoo():
    zoo = RankedZoo()
    with registered_plugin(zoo, "ranked-zoo"):  # unregistered in its finally
        yield zoo


def test_a_third_party_zoo_is_ranked_like_the_builtin_ones_and_conforms(ranked_zoo):
    ranked = rank(get_ranking_entries("image"), 3, max_params=10_000_000)
    assert ranked[0].id == "fake/tiny-cnn"
    assert ranked[1].id.startswith(("timm/", "packaged/"))
    assert check_ranking("fake", "image")[0].id == "fake/tiny-cnn"


def test_conformance_names_a_ranking_entry_without_a_throughput_source(ranked_zoo):
    ranked_zoo.source = ""
    with pytest.raises(ConformanceError, match="fake/tiny-cnn: throughput"):
        check_ranking("fake", "image")


def test_builtin_zoos_conform():
    timm = check_ranking("timm", "image")
    packaged = check_ranking("packaged", "image")
    assert len(timm) > 1000 and all(e.loads_offline for e in packaged)
    assert check_ranking("packaged", "audio")[0].signal.startswith("parameters")


def test_timm_snapshot_ranks_within_the_bounds_best_first():
    entries = get_ranking_entries("image")
    ranked = rank(entries, 6, max_params=parse_count("10M"), min_throughput=100)
    assert len(ranked) == 6
    assert all(e.params <= 10_000_000 and e.throughput["cpu"] >= 100 for e in ranked)
    assert [e.score for e in ranked] == sorted((e.score for e in ranked), reverse=True)
    assert len({e.architecture for e in ranked}) == 6  # one tag per architecture
    # the example: tf_efficientnet_lite0 (97 img/s on the CPU row) is under the bound
    lite0 = next(e for e in entries if e.id == "timm/tf_efficientnet_lite0.in1k")
    assert lite0.throughput["cpu"] < 100 and lite0 not in ranked
    assert "i7_12700h" in lite0.throughput_source["cpu"]
    gpu = rank(entries, 3, min_throughput=20_000, device="gpu")
    assert all(e.throughput["gpu"] >= 20_000 for e in gpu)


def test_offline_only_keeps_the_packaged_weights():
    ranked = rank(get_ranking_entries("image"), None, offline_only=True)
    assert {e.id for e in ranked} >= {"packaged/tf_efficientnet_lite0", "packaged/mobilenetv2_100"}


@pytest.mark.parametrize("text, count", [("10M", 10_000_000), ("500k", 500_000), ("2e", None),
                                         (3000, 3000), ("1.5B", 1_500_000_000)])
def test_parse_count(text, count):
    if count is None:
        with pytest.raises(OptionError, match="max_params must be a count"):
            parse_count(text)
    else:
        assert parse_count(text) == count


def test_cli_rank_json_shows_figures_and_sources():
    run = CliRunner().invoke(app, ["backbones", "--modality", "image", "--rank", "4",
                                   "--max-params", "10M", "--min-throughput", "100", "--json"])
    assert run.exit_code == 0, run.output
    rows = json.loads(run.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert all(r["params"] <= 10_000_000 and r["throughput"]["cpu"] >= 100 for r in rows)
    assert all("results-imagenet.csv" in r["source"] for r in rows if r["id"].startswith("timm"))
    assert {"license", "input_size", "loads_offline", "throughput_source"} <= set(rows[0])


def test_cli_rank_table_marks_what_loads_here_and_bad_bounds_are_one_line(capsys):
    run = CliRunner().invoke(app, ["backbones", "--modality", "image", "--rank", "40",
                                   "--max-params", "7M"])
    assert run.exit_code == 0, run.output
    assert "packaged/tf_efficientnet_lite2" in run.stdout and "download" in run.stdout
    assert "of 1" in run.stderr and "results-imagenet.csv" in run.stderr
    with pytest.raises(SystemExit) as stop:
        main(["backbones", "--modality", "image", "--rank", "3", "--max-params", "ten"])
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: --max-params must be a count such as 10M, 500K or 2000000, got 'ten'"]


# --- a ranked search space ------------------------------------------------------------------

def _ranked_space(**rule):
    from autotransfer.space.schema import parse_space

    return parse_space({"backbones": {"rank": 2} | rule, "epochs": 1})


def test_a_ranked_space_expands_offline_to_what_loads_here_and_a_resume_keeps_it(monkeypatch):
    import optuna

    from autotransfer.finetune.records import StudyRecord
    from autotransfer.study.ranked import expand_space

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = optuna.create_study()
    space, note = expand_space(study, _ranked_space(max_params="10M"), "image")
    ids = [b.id for b in space.backbones]
    # offline, the two best packaged ImageNet weights under 10M: EfficientNet-Lite2 and -Lite1
    assert ids == ["packaged/tf_efficientnet_lite2", "packaged/tf_efficientnet_lite1"]
    assert "that load here (HF_HUB_OFFLINE=1)" in note and "\n" not in note
    assert StudyRecord.of(study).ranked["ids"] == ids
    with registered_plugin(RankedZoo(), "ranked-zoo"):  # a better candidate appears later
        again, note = expand_space(study, _ranked_space(max_params="10M"), "image")
        fresh, _ = expand_space(optuna.create_study(), _ranked_space(max_params="10M"), "image")
    assert [b.id for b in again.backbones] == ids and "recorded by the study" in note
    assert fresh.backbones[0].id == "fake/tiny-cnn"


def test_a_candidate_that_cannot_be_fetched_is_named_in_one_line_and_skipped(monkeypatch):
    from autotransfer.study.ranked import expand

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    rule = _ranked_space(max_params="10M", min_throughput=100).backbones
    with pytest.warns(UserWarning, match=r"skipped 1 whose weights cannot be fetched: "
                                         r"timm/levit_conv_128.fb_dist_in1k \(gated\)"):
        ids, _ = expand(rule, "image", fetchable=lambda e: "gated" if "levit_conv" in e.id
                        else None)
    assert ids == ["timm/levit_128.fb_dist_in1k", "timm/hardcorenas_f.miil_green_in1k"]


def test_a_ranked_space_without_candidates_is_one_clear_error(monkeypatch):
    from autotransfer.errors import SpaceError
    from autotransfer.study.ranked import expand

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpaceError, match="no image candidate that load here.*max_params 1K"):
        expand(_ranked_space(max_params="1K").backbones, "image")
    with pytest.raises(SpaceError, match="backbones.rank: Input should be greater"):
        _ranked_space(rank=0)
    with pytest.raises(SpaceError, match="backbones.max_params: must be a count such as 10M"):
        _ranked_space(max_params="ten")


def test_online_reads_the_current_tables_and_offline_keeps_the_snapshot(tmp_path, monkeypatch):
    import autotransfer_timm.tables as tables

    speed = "model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size\n"
    files = {
        tables.IMAGENET: "model,img_size,top1,param_count\nnewnet.x_in1k,224,91.5,\"1,000.0\"\n",
        **{f: "model,top1\nnewnet.x_in1k,50.0\n" for f in tables.SHIFTED.values()},
        tables.CPU: speed + "newnet,224,\"1,200.5\",1,1\n", tables.GPU: speed,
        tables.PRETRAIN: "model,pretrain\nnewnet,in1k\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(tables, "TABLES_URL", tmp_path.as_uri() + "/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert tables.online_tables() is None  # offline: the caller keeps the snapshot
    assert "newnet" not in {e.architecture for e in get_ranking_entries("image", online=True)}
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    current = get_ranking_entries("image", online=True)
    new = next(e for e in current if e.id == "timm/newnet.x_in1k")
    assert (new.score, new.params, new.throughput) == (91.5, 1_000_000_000, {"cpu": 1200.5})
    assert tmp_path.as_uri() in new.source


def test_the_checks_before_the_data_leave_a_ranked_space_to_its_expansion():
    from autotransfer.study.checks import check_backbones, check_local_weights

    space = _ranked_space(max_params="10M")
    check_backbones(space)  # the ids are checked once the study expands the rule
    check_local_weights(space)


# --- the CPU front, and the shipped image spaces that rank it ---------------------------------

def test_front_keeps_only_candidates_no_other_beats_on_both_score_and_cpu_speed():
    entries = get_ranking_entries("image")
    front = rank(entries, None, front="cpu", max_params=parse_count("10M"))
    assert len(front) > 3
    for entry in front:  # nothing within the bounds is better and faster
        assert not any(o.score > entry.score and o.throughput["cpu"] > entry.throughput["cpu"]
                       for o in rank(entries, None, max_params=parse_count("10M"))
                       if "cpu" in o.throughput)
    ids = {e.architecture for e in front}
    # the example: Lite0 (74.8 %, 97 img/s) is dominated by MobileNetV3-Large
    assert "mobilenetv3_large_100" in ids and "tf_efficientnet_lite0" not in ids
    with pytest.raises(OptionError, match="front must be one of cpu, gpu"):
        rank(entries, 1, front="tpu")


@pytest.mark.parametrize("space, online, offline", [
    ("autotransfer/space/defaults/image.yaml",
     ["timm/mobilenetv3_large_100.miil_in21k_ft_in1k", "timm/hardcorenas_b.miil_green_in1k"],
     ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0"]),  # as before, in order
    ("search_spaces/image.yaml", 6, ["packaged/tf_efficientnet_lite2",
                                     "packaged/tf_efficientnet_lite1",
                                     "packaged/tf_efficientnet_lite0",
                                     "packaged/mobilenetv2_100"]),
])
def test_the_shipped_image_spaces_rank_the_cpu_front_online_and_offline_keep_packaged_weights(
        monkeypatch, space, online, offline):
    from pathlib import Path

    from autotransfer.space.schema import load_space
    from autotransfer.study.ranked import expand

    rule = load_space(Path(__file__).parents[1] / space).backbones
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ids, note = expand(rule, "image", fetchable=lambda e: None)
    front = {e.id for e in rank(get_ranking_entries("image"), None, front="cpu")}
    assert ids == online if isinstance(online, list) else len(ids) == online
    assert all(i in front for i in ids) and "front cpu" in note
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ids, note = expand(rule, "image")
    assert ids == offline and "HF_HUB_OFFLINE=1" in note and "\n" not in note


def test_a_hub_that_does_not_answer_falls_back_to_the_offline_list_in_one_line(monkeypatch):
    from autotransfer.errors import HubUnreachable
    from autotransfer.study.ranked import expand

    def down(entry):
        raise HubUnreachable("the Hugging Face Hub did not answer model_info(x) (ConnectError)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    rule = _ranked_space(front="cpu", offline=["packaged/mobilenetv2_100"]).backbones
    ids, note = expand(rule, "image", fetchable=down)
    assert ids == ["packaged/mobilenetv2_100"]
    assert note.startswith("backbones: offline (the Hugging Face Hub did not answer")
    rule = _ranked_space(front="cpu", max_params="10M").backbones  # no offline list
    ids, note = expand(rule, "image", fetchable=down)
    assert all(i.startswith("packaged/") for i in ids) and "that load here (the Hugging" in note


def test_the_prescreen_command_expands_a_ranked_space_without_a_study(capsys):
    from autotransfer.cli.app import _expanded_now
    from autotransfer.space.defaults import default_space
    from autotransfer.space.schema import load_space

    space = _expanded_now(load_space(default_space("image")), "image")
    assert [b.id for b in space.backbones] == ["packaged/mobilenetv2_100",
                                               "packaged/tf_efficientnet_lite0"]
    assert "the space's offline list" in capsys.readouterr().err
