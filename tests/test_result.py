"""best.yaml as one typed model (autotransfer.space.result): the writer's schema 2, a file
written the old way (no ``schema``) still read by ``train``, and ``predict`` through a
best.yaml's export."""

from __future__ import annotations

import pytest
import yaml

from autotransfer.errors import SpaceError
from autotransfer.model.predict import model_dir_of
from autotransfer.model.refit import for_trial, read_best
from autotransfer.space.result import SCHEMA, BestResult

#: best.yaml as autotransfer 0.1 wrote it (before schema 2): no schema, no scores, no exports
OLD = """\
# Best transfer configuration found by `autotransfer search`.
backbone: packaged/mobilenetv2_100
params: {lr: 0.001, freeze_fraction: 0.5, batch_size: 32}
epochs: 3
metric: accuracy
val_score: 0.8
test_score: 0.75
val_score_ci95: [0.7, 0.9]
classes: [a, b]
latency_ms: 3.5
throughput: 120.0
params_count: 2257984
size_mb: 9.1
macro_f1: 0.79
references: {}
objectives: [accuracy, latency_ms]
pick: accuracy
pareto_front:
- {trial: 2, backbone: packaged/mobilenetv2_100, params: {lr: 0.001}, val_score: 0.8,
   latency_ms: 3.5, params_count: 2257984, size_mb: 9.1}
- {trial: 5, backbone: {id: packaged/tf_efficientnet_lite0, pretrained: false},
   params: {lr: 0.003}, val_score: 0.7, latency_ms: 1.0, params_count: 100, size_mb: 1.0}
source:
  study: s
  trial: 2
  seed: 0
  data: /data
  space: space.yaml
  val_fraction: 0.2
  storage: sqlite:///x.db
  data_options: {modality: null, columns: {text: text, label: label}, data_store: null}
"""


def test_a_best_yaml_written_the_old_way_loads_and_keeps_its_keys(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text(OLD, encoding="utf-8")
    best = read_best(path)
    assert best.schema_version == 1 and best.backbone_id == "packaged/mobilenetv2_100"
    assert best.source.trial == 2 and best.source.data_options["columns"]["text"] == "text"
    assert best.ensemble is None and best.exports == []
    written = best.to_mapping()  # nothing lost: the costs stay top-level keys
    assert {k: v for k, v in written.items() if k != "schema"} == yaml.safe_load(OLD)
    member = for_trial(best, 5)  # a member of the front, as train --trial reads it
    assert member.backbone == {"id": "packaged/tf_efficientnet_lite0", "pretrained": False}
    assert member.source.trial == 5 and member.val_score == 0.7 and member.params == {
        "lr": 0.003}


def test_the_writer_orders_schema_first_and_costs_after_classes():
    best = BestResult.parse({"schema": SCHEMA, "backbone": "zoo/a", "params": {}, "classes":
                             ["a", "b"], "peak_memory_mb": 12.0, "scores": {"val": {
                                 "accuracy": 0.5}}, "source": {"trial": 0}}, "best.yaml")
    assert list(best.to_mapping()) == ["schema", "backbone", "params", "classes",
                                       "peak_memory_mb", "scores", "source"]
    assert best.to_mapping()["schema"] == 2


def test_a_bad_key_is_one_line_naming_it(tmp_path):
    path = tmp_path / "best.yaml"
    path.write_text("backbone: zoo/a\nparams: {}\nepochs: many\n", encoding="utf-8")
    with pytest.raises(SpaceError, match=r"best.yaml: epochs: "):
        read_best(path)
    path.write_text("backbone: zoo/a\n", encoding="utf-8")
    with pytest.raises(SpaceError, match="missing key 'params'"):
        read_best(path)


def test_predict_finds_the_export_a_best_yaml_lists(tmp_path):
    from autotransfer.model.export import ModelDirError

    path = tmp_path / "out" / "best.yaml"
    path.parent.mkdir()
    path.write_text(OLD, encoding="utf-8")
    with pytest.raises(ModelDirError, match="lists no exported model"):
        model_dir_of(path)
    path.write_text(OLD + "exports:\n- {path: best-model, trial: 2}\n", encoding="utf-8")
    assert model_dir_of(path) == tmp_path / "out" / "best-model"
    assert model_dir_of(tmp_path / "model") == tmp_path / "model"  # a folder: as given
