"""The device-aware prior (#39 item 3): published GMACs times a per-device constant, before any
trial. The constant is faked wherever a figure is asserted (no timing assertions)."""

from __future__ import annotations

import json

import optuna
import pytest
import timm
import torch
from typer.testing import CliRunner

from autotransfer import hookimpl
from autotransfer.cli.app import app
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.ranking import RankingEntry
from autotransfer.space.schema import parse_space
from autotransfer.study.budget import backbone_cost, prior
from autotransfer.study.budget.prior import DeviceConstant, prior_of
from autotransfer.testing import registered_plugin

#: 100 ms per GMAC, 10 ms per million parameters, and a CPU as fast as timm's i7-12700H row
#: (the reference takes its row's 1000 / 135.11 ms): lite0's row (97.3 images/s) -> 10.28 ms
FAKE = DeviceConstant("cpu", "cpu", ms_per_gmac=100.0, ms_per_mparam=10.0,
                      reference_ms=1000 / prior.REFERENCE_ROW_IPS, threads=1)


@pytest.fixture
def fake_constant(monkeypatch):
    monkeypatch.setattr(prior, "device_constant", lambda device="cpu", **_: FAKE)
    prior._entries.cache_clear()
    yield FAKE
    prior._entries.cache_clear()


def _entry(**fields) -> RankingEntry:
    return RankingEntry("z/net", "image", 70.0, "top-1", "paper", **fields)


def test_the_prior_is_published_gmacs_at_the_input_size_times_the_device_constant():
    at_224 = prior_of(_entry(gmacs=0.4, gmacs_size=224, input_size=224), FAKE)
    assert at_224.latency_ms == pytest.approx(40.0)
    assert at_224.images_per_s == pytest.approx(25.0)
    assert "0.40 GMACs" in at_224.source and "100.0 ms/GMAC" in at_224.source
    assert "this cpu" in at_224.source
    # the row's GMACs are scaled by the pixels of the size asked for
    assert prior_of(_entry(gmacs=0.4, gmacs_size=224), FAKE, 112).latency_ms == pytest.approx(10)
    # no GMACs published: the parameter count, said in the source
    by_params = prior_of(_entry(params=3_000_000), FAKE)
    assert by_params.latency_ms == pytest.approx(30.0) and "no GMACs" in by_params.source
    assert prior_of(_entry(), FAKE) is None
    # a published CPU row wins on the CPU: its time, scaled by this CPU's reference over its row
    row = dict(gmacs=0.4, gmacs_size=224, input_size=224, throughput={"cpu": 50.0},
               throughput_source={"cpu": "cpu-i7.csv: net, 224px, batch 1"})
    twice_slower = DeviceConstant("cpu", "cpu", 100.0, 10.0, 2 * 1000 / prior.REFERENCE_ROW_IPS, 1)
    by_row = prior_of(_entry(**row), twice_slower)
    assert by_row.latency_ms == pytest.approx(40.0) and "cpu-i7.csv" in by_row.source
    assert prior_of(_entry(**row), twice_slower, 112).latency_ms == pytest.approx(10.0)


def test_a_gpu_with_a_row_in_the_table_takes_its_throughput_and_others_the_model():
    row = dict(gmacs=0.4, gmacs_size=224, throughput={"gpu": 9000.0},
               throughput_source={"gpu": "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv: "
                                         "net, 224px, batch 1024"})
    rtx = DeviceConstant("cuda:0", "NVIDIA GeForce RTX 4090", 2.0, 0.1, 0.5, 1)
    h100 = DeviceConstant("cuda:0", "NVIDIA H100 80GB HBM3", 2.0, 0.1, 0.5, 1)
    on_rtx, on_h100 = prior_of(_entry(**row), rtx), prior_of(_entry(**row), h100)
    assert on_rtx.images_per_s == 9000.0 and "rtx4090.csv" in on_rtx.source
    assert on_h100.images_per_s == pytest.approx(1000 / 0.8) and "rtx4090" not in on_h100.source
    assert on_rtx.latency_ms == on_h100.latency_ms == pytest.approx(0.8)  # batch 1: the model


def test_the_snapshot_keeps_the_published_gmacs_and_the_reference_matches_its_row():
    from autotransfer_timm.tables import gmacs_row, snapshot

    assert gmacs_row(snapshot(), prior.REFERENCE) == (prior.REFERENCE_GMACS,
                                                      prior.REFERENCE_SIZE)
    assert snapshot()["cpu"][prior.REFERENCE][1] == prior.REFERENCE_SIZE
    lite0 = prior.find_entry("packaged/tf_efficientnet_lite0", "image")
    assert (lite0.gmacs, lite0.gmacs_size) == (0.4, 224)
    # an id without its pretrained tag finds its architecture's row
    assert prior.find_entry("timm/resnet18", "image").architecture == "resnet18"


def test_the_device_constant_is_timed_once_per_process_on_random_weights(monkeypatch):
    created = []
    real = timm.create_model

    def spy(name, **kwargs):
        created.append((name, kwargs.get("pretrained")))
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    prior._measure.cache_clear()
    first = prior.device_constant("cpu", budget_s=0.05)
    again = prior.device_constant(torch.device("cpu"), budget_s=0.05)
    assert again is first and created == [(prior.REFERENCE, False)]  # no weight download
    assert first.ms_per_gmac * prior.REFERENCE_GMACS == pytest.approx(first.reference_ms)
    assert first.threads == torch.get_num_threads()


def test_cli_max_latency_ms_drops_what_the_prior_puts_over_twice_the_bound(fake_constant):
    run = CliRunner().invoke(app, ["backbones", "--modality", "image", "--rank", "100",
                                   "--max-params", "7M", "--max-latency-ms", "6", "--json"])
    assert run.exit_code == 0, run.output
    rows = json.loads(run.stdout)
    assert rows and all(r["prior_latency_ms"] <= 12 for r in rows)
    ids = {r["id"] for r in rows}
    assert "packaged/tf_efficientnet_lite0" in ids  # 10.3 ms: within 2 x 6
    assert "packaged/tf_efficientnet_lite1" not in ids  # 74.97 images/s: 13.3 ms
    table = CliRunner().invoke(app, ["backbones", "--modality", "image", "--rank", "3",
                                     "--prior"])
    assert table.exit_code == 0, table.output
    assert "prior ms" in table.stdout and "i7-12700H CPU row" in table.stderr
    plain = CliRunner().invoke(app, ["backbones", "--modality", "image", "--rank", "3"])
    assert "prior ms" not in plain.stdout  # not asked: torch is not imported for it


def test_a_ranked_space_s_max_latency_ms_keeps_candidates_within_twice_the_bound(
        fake_constant, monkeypatch):
    from autotransfer.study.ranked import expand

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    space = parse_space({"backbones": {"rank": 2, "max_params": "10M"}, "epochs": 1})
    assert expand(space.backbones, "image")[0] == ["packaged/tf_efficientnet_lite2",
                                                   "packaged/tf_efficientnet_lite1"]
    bounded = parse_space({"backbones": {"rank": 2, "max_params": "10M", "max_latency_ms": 6},
                           "epochs": 1})
    ids, note = expand(bounded.backbones, "image")
    # lite2 16.7 ms, lite1 13.3 ms, lite0 10.3 ms (kept: at most 12), mobilenetv2 6.6 ms
    assert ids == ["packaged/tf_efficientnet_lite0", "packaged/mobilenetv2_100"]
    assert "at most 2x 6 ms" in note and "100.0 ms/GMAC" in note
    with pytest.raises(Exception, match="max_latency_ms: Input should be greater than 0"):
        parse_space({"backbones": {"rank": 2, "max_latency_ms": 0}, "epochs": 1})


def test_a_latency_bound_prunes_a_backbone_whose_prior_is_far_over_it_before_loading(
        fake_constant):
    from autotransfer.finetune.records import TrialRecord
    from autotransfer.study.selection import Rule

    study = optuna.create_study()
    trial = study.ask()
    far = Rule(constraints={"latency_ms": 4.0})  # lite0's prior 10.3 ms > 2 x 4
    with pytest.raises(optuna.TrialPruned, match=r"latency_ms prior 10.3 > 2 x 4 .*not started"):
        prior.check_latency_before_load(trial, "packaged/tf_efficientnet_lite0", "image", "cpu",
                                        {}, far)
    assert "latency_ms" in TrialRecord.from_frozen(study.trials[0]).prune_reason
    near = Rule(constraints={"latency_ms": 6.0})  # 10.3 ms is within 2 x 6: it loads
    prior.check_latency_before_load(trial, "packaged/tf_efficientnet_lite0", "image", "cpu",
                                    {}, near)
    # ONNX Runtime's int8 is not what the prior models: left to the measurement
    prior.check_latency_before_load(trial, "packaged/tf_efficientnet_lite0", "image", "cpu",
                                    {}, far, runtime="onnxruntime")
    prior.check_latency_before_load(trial, "unranked/net", "image", "cpu", {}, far)


def test_the_cost_aware_draw_weighs_an_unmeasured_backbone_by_its_prior(tmp_path):
    from autotransfer.study.budget.cost_aware import backbone_weights, from_prior

    study = optuna.create_study()
    space = parse_space({"backbones": ["tiny/a", "tiny/b"], "epochs": 1,
                         "params": {"image_size": 32}})
    cost = {"load_seconds": 0.0, "eval_sample_seconds": 0.0, "size": 32.0,
            "size_key": "image_size", "batch_size": 8, "n_train": 100, "n_val": 100,
            "train_sample_seconds": 0.01}
    study.set_user_attr("backbone_costs", {"tiny/a": cost})  # b's step failed: not measured
    alone = backbone_weights(study, space, before=9)
    assert alone["tiny/a"] == pytest.approx(alone["tiny/b"])  # b: the median cost
    weighed = backbone_weights(study, space, before=9, prior={"tiny/a": 10.0, "tiny/b": 40.0})
    assert weighed["tiny/b"] == pytest.approx(weighed["tiny/a"] / 4)  # four times dearer
    assert from_prior({}, {"x": 2.0, "y": 8.0}) == {"x": 2.0, "y": 8.0}  # relative alone


class RankedTinyZoo:
    """Two tiny CNNs with published GMACs: the prior covers the space."""

    @hookimpl
    def register_backbones(self, register):
        for name in ("a", "b"):
            register(BackboneEntry(f"tinyp/{name}", "image", loader=_tiny))

    @hookimpl
    def register_ranking(self, register, modality, online):
        if modality == "image":
            for name, gmacs in (("a", 0.1), ("b", 0.4)):
                register(RankingEntry(f"tinyp/{name}", "image", 50.0, "top-1", "fake",
                                      params=1000, gmacs=gmacs, gmacs_size=32))


def _tiny(pretrained=True):
    from autotransfer_timm import backbone_from_timm

    torch.manual_seed(0)
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


def test_where_the_prior_covers_every_backbone_the_cost_aware_start_skips_the_timed_step(
        fake_constant, class_folders, tmp_path, monkeypatch):
    from autotransfer.finetune.records import StudyRecord
    from autotransfer.study.study import search
    from autotransfer.study.warm_start import costs_wanted

    calls = []
    monkeypatch.setattr(backbone_cost, "measure_cost", lambda *a, **k: calls.append(a) or {})
    space = parse_space({"backbones": ["tinyp/a", "tinyp/b"], "epochs": 1, "pruner": "none",
                         "params": {"image_size": 32, "batch_size": 8, "augment": "none"}})
    assert costs_wanted(space, references=True, budgeted=False)  # today: timed
    assert not costs_wanted(space, references=True, budgeted=False, prior_covers=lambda: True)
    assert costs_wanted(space, references=True, budgeted=True, prior_covers=lambda: True)
    with registered_plugin(RankedTinyZoo(), "ranked-tiny"):
        prior._entries.cache_clear()
        result = search(class_folders, space, trials=3, storage=f"sqlite:///{tmp_path}/s.db",
                        study_name="s", out=tmp_path / "out", history=False)
    assert calls == []  # no timed step: the prior stands in for it
    recorded = StudyRecord.of(result.study).priors
    assert recorded["labels"] == {"tinyp/a": pytest.approx(10.0), "tinyp/b": pytest.approx(40.0)}
    assert "100.0 ms/GMAC" in recorded["source"]
