"""The search's data options (autotransfer.data.options) are recorded in best.yaml and honoured
by ``autotransfer train``: a Hugging Face dataset searched with ``image_column="photo"`` refits
with no option repeated."""

from pathlib import Path

import datasets  # the [hf] extra, which the [test] extra includes
import pytest
import yaml

from autotransfer.cli import main
from autotransfer.data.options import DataOptions
from autotransfer.errors import DataError, OptionError
from autotransfer.model.refit import train
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from conftest import write_images


@pytest.fixture
def two_image_columns(tmp_path, monkeypatch) -> Path:
    """A saved Dataset with two Image columns (``photo``, ``sketch``) and a ClassLabel: which
    image column to read cannot be guessed."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    files, labels = [], []
    for label, name in enumerate(("cat", "dog")):
        write_images(tmp_path / "png" / name, 10, size=(16, 16), seed=label)
        found = sorted((tmp_path / "png" / name).glob("*.png"))
        files += [str(f) for f in found]
        labels += [label] * len(found)
    features = datasets.Features({"photo": datasets.Image(), "sketch": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["cat", "dog"])})
    out = tmp_path / "pets"
    datasets.Dataset.from_dict({"photo": files, "sketch": files[::-1], "label": labels},
                               features=features).save_to_disk(str(out))
    return out


@pytest.mark.filterwarnings("ignore:every finished trial scored at chance level")
def test_a_search_on_a_named_image_column_refits_with_no_option(two_image_columns, tmp_path,
                                                                capsys):
    space = parse_space({"backbones": [{"id": "timm/test_efficientnet", "pretrained": False}],
                         "epochs": 1, "pruner": "none",
                         "params": {"lr": 3e-3, "freeze_fraction": 0.0, "image_size": 32}})
    with pytest.raises(DataError, match="photo"):  # two Image columns: not guessed
        search(two_image_columns, space, trials=1, storage=f"sqlite:///{tmp_path}/a.db",
               out=tmp_path / "a", device="cpu")
    result = search(two_image_columns, space, trials=1, image_column="photo",
                    storage=f"sqlite:///{tmp_path}/b.db", out=tmp_path / "b", device="cpu",
                    data_store="memory")
    best_path = tmp_path / "b" / "best.yaml"
    assert result.study.metric_names == ["val accuracy"]  # optuna-dashboard's axis label
    recorded = yaml.safe_load(best_path.read_text())["source"]["data_options"]
    assert recorded["columns"]["image"] == "photo" and recorded["data_store"] == "memory"
    capsys.readouterr()
    main(["train", str(best_path), "--out", str(tmp_path / "model"), "--device", "cpu"])
    assert (tmp_path / "model" / "autotransfer.json").is_file()
    # without the record, train cannot tell which image column the search read
    stripped = {**result.best, "source": {**result.best["source"], "data_options": None}}
    with pytest.raises(DataError, match="photo"):
        train(stripped, out=tmp_path / "model2", device="cpu")
    # an option given to train overrides the record
    with pytest.raises(DataError, match="nope"):
        train(result.best, out=tmp_path / "model3", device="cpu", image_column="nope")


def test_data_options_round_trip_and_reject_unknown_roles():
    options = DataOptions.of(modality="image", image_column="photo", data_store="memory")
    assert DataOptions.from_yaml(options.to_yaml(), "best.yaml") == options
    assert {role: options.column(role) for role in ("text", "label", "image", "audio")} == {
        "text": "text", "label": "label", "image": "photo", "audio": None}
    with pytest.raises(OptionError, match="colour: unknown data option"):
        DataOptions.of(colour="red")
    assert DataOptions(columns={"label": "kind"}).over(options).columns == {"image": "photo",
                                                                            "label": "kind"}
    with pytest.raises(OptionError, match="unknown column role 'video'"):
        DataOptions(columns={"video": "clip"})
    with pytest.raises(OptionError, match="unknown key 'colums'"):
        DataOptions.from_yaml({"colums": {}}, "best.yaml")


def test_load_data_keeps_the_data_store_it_was_given(class_folders, tmp_path):
    # the store is one of the data options: load_data sets it, no caller patches it afterwards
    from autotransfer.data import load_data

    assert load_data(class_folders, data_store="memory").store == "memory"
    assert load_data(class_folders, data_store=tmp_path / "s").store == str(tmp_path / "s")
    assert load_data(class_folders).store is None


def test_search_groups_its_options_and_keeps_the_data_keywords():
    from autotransfer.study.options import SearchOptions

    built = SearchOptions.build("d", "s.yaml", trials=3, keep_best=True, modality="text",
                                text_column="review", data_store="memory")
    assert (built.trials, built.keep_best, built.data_store) == (3, True, "memory")
    assert built.data_options == DataOptions("text", {"text": "review"}, "memory")
    given = DataOptions(columns={"image": "photo"})
    assert SearchOptions.build("d", "s.yaml", data_options=given, label_column="kind"
                               ).data_options.columns == {"image": "photo", "label": "kind"}
    with pytest.raises(OptionError, match="trails: unknown search option; did you mean "
                                          "'trials'"):
        search("d", "s.yaml", trails=3)


def test_the_study_records_what_was_read_and_a_resume_with_other_options_says_so(tmp_path):
    # review 1.2: the detected modality was recorded as null and the CLI's default column
    # names as if asked; a resumed study overwrote its options without a word
    import optuna

    from autotransfer.data import DataWarning
    from autotransfer.data.dataset import LabelledData
    from autotransfer.finetune.records import StudyRecord
    from autotransfer.study.checks import record_data_options

    table = tmp_path / "reviews.csv"
    table.write_text("body,label\ngood,pos\n", encoding="utf-8")
    folder = LabelledData("image", ["a", "b"], None, None, None, tmp_path)  # class folders
    read = LabelledData("text", ["neg", "pos"], None, None, None, table)  # a table
    assert DataOptions(columns={"text": "text"}).resolved(folder) == DataOptions("image", {})
    assert DataOptions(columns={"text": "body"}).resolved(read) == DataOptions(
        "text", {"text": "body", "label": "label"})
    study = optuna.create_study()
    record_data_options(study, DataOptions(columns={"text": "body"}), read)
    assert StudyRecord.of(study).data_options == {
        "modality": "text", "columns": {"text": "body", "label": "label"}, "data_store": None}
    with pytest.warns(DataWarning, match=r"other data options \(columns.text body -> review\)"):
        record_data_options(study, DataOptions(columns={"text": "review"}), read)
    assert StudyRecord.of(study).data_options["columns"]["text"] == "review"
