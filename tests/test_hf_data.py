"""Hugging Face datasets as input: save_to_disk folders, Parquet files, columns from features."""

from pathlib import Path

import datasets  # the [hf] extra, which the [test] extra includes
import numpy as np
import pytest

from autotransfer.contract.collect import get_backbone
from autotransfer.data import check_data, load_data
from autotransfer.errors import DataError
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path, monkeypatch):
    """Parquet loads convert into the datasets cache: keep it in the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def fashion_split(folder: Path):
    """A Dataset with an Image column and a ClassLabel from class folders of real PNGs."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(str(f), i) for i, c in enumerate(classes) for f in sorted((folder / c).glob("*"))]
    features = datasets.Features({"picture": datasets.Image(),
                                  "kind": datasets.ClassLabel(names=classes)})
    return datasets.Dataset.from_dict(
        {"picture": [f for f, _ in files], "kind": [y for _, y in files]}, features=features)


@pytest.fixture(scope="module")
def saved_images(fashion_mnist, tmp_path_factory) -> Path:
    """Real Fashion-MNIST as a saved DatasetDict: train and test, image bytes embedded."""
    out = tmp_path_factory.mktemp("hf") / "fashion"
    splits = datasets.DatasetDict(train=fashion_split(fashion_mnist / "train"),
                                  test=fashion_split(fashion_mnist / "test"))
    splits.save_to_disk(str(out))
    return out


def test_a_saved_datasetdict_is_searched_like_class_folders(saved_images, fashion_mnist,
                                                           tmp_path):
    data = load_data(saved_images, seed=0)
    # modality, columns and class names from the features; train only -> split here
    assert data.modality == "image" and data.classes[:2] == ["ankle-boot", "bag"]
    assert len(data.train) == 240 and len(data.val) == 60 and len(data.test) == 100
    assert set(np.bincount(data.val.labels)) == {6}  # stratified like folders
    check_data(data)
    space = parse_space({"backbones": ["fake/tiny-cnn"], "epochs": 1, "pruner": "none",
                         "params": {"lr": 3e-3, "freeze_fraction": 0.0}})
    results = {}
    with registered_plugin(FakeZoo()):
        for name, source in (("hf", saved_images), ("folders", fashion_mnist)):
            results[name] = search(
                source, space, trials=1, storage=f"sqlite:///{tmp_path}/{name}.db",
                out=tmp_path / name, device="cpu", data_store=tmp_path / "store").best
    # the same images, classes and split as the class folders: the same scores
    assert results["hf"]["val_score"] == results["folders"]["val_score"]
    assert results["hf"]["test_score"] == results["folders"]["test_score"]
    assert results["hf"]["source"]["data"] == str(saved_images.resolve())  # train refits it


def test_text_with_string_labels_and_a_validation_split(tmp_path):
    reviews = {"review": ["a fine film", "dull and long", "loved it", "a waste"] * 6,
               "verdict": ["pos", "neg", "pos", "neg"] * 6, "id": list(range(24))}
    splits = datasets.DatasetDict(train=datasets.Dataset.from_dict(reviews),
                                  validation=datasets.Dataset.from_dict(reviews))
    splits.save_to_disk(str(tmp_path / "reviews"))
    data = load_data(tmp_path / "reviews", label_column="verdict")
    assert data.modality == "text" and data.classes == ["neg", "pos"]
    assert len(data.train) == 24 and len(data.val) == 24 and data.train.texts[0] == "a fine film"
    # the packaged MiniLM tokenises the split (stored and mapped like files' texts)
    backbone = get_backbone("packaged/all-MiniLM-L6-v2").load()
    data.store = str(tmp_path / "store")
    inputs, labels = backbone.preprocess.encode(data, "train")
    assert inputs["input_ids"].shape == (24, 128) and labels.tolist()[:2] == [1, 0]


def test_parquet_files_by_split_and_a_single_file(tmp_path, fashion_mnist):
    folder = tmp_path / "pq"
    folder.mkdir()
    train = fashion_split(fashion_mnist / "train")
    train.to_parquet(str(folder / "train.parquet"))
    fashion_split(fashion_mnist / "test").to_parquet(str(folder / "validation.parquet"))
    data = load_data(folder)
    assert data.modality == "image" and len(data.train) == 300 and len(data.val) == 100
    assert data.test is None and data.n_classes == 10
    single = load_data(folder / "train.parquet", seed=1)  # only train: split here
    assert len(single.train) == 240 and len(single.val) == 60


def test_bad_columns_name_the_split_and_list_the_columns(saved_images, tmp_path):
    with pytest.raises(DataError) as info:
        load_data(saved_images, label_column="genre")
    message = str(info.value)
    assert "split 'train'" in message and "no label column 'genre'" in message
    assert "picture (Image), kind (ClassLabel: 10 names)" in message and "\n" not in message
    with pytest.raises(DataError, match=r"image column 'kind' is ClassLabel, expected Image"):
        load_data(saved_images, image_column="kind")
    no_label = datasets.Dataset.from_dict({"a": ["x", "y"], "b": ["u", "v"]})
    no_label.save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(DataError, match=r"split 'train': no label column \(ClassLabel\); "
                                        r"columns: a \(string\), b \(string\)"):
        load_data(tmp_path / "plain")


def test_rows_without_label_are_left_out_and_an_unlabelled_test_split_dropped(tmp_path):
    rows = {"text": [f"sample {i}" for i in range(12)], "label": [0, 1] * 6}
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["no", "yes"])})
    unlabelled = {"text": ["?"] * 3, "label": [-1] * 3}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(rows, features=features),
        test=datasets.Dataset.from_dict(unlabelled, features=features),
    ).save_to_disk(str(tmp_path / "d"))
    data = load_data(tmp_path / "d")
    assert data.test is None and len(data.train) + len(data.val) == 12
    # reported with the other findings of the checks before trial 1
    with pytest.warns(UserWarning, match=r"split 'test': left out 3 row\(s\) without a label"):
        check_data(data)


def test_inspect_reports_a_hugging_face_dataset(saved_images, capsys):
    from autotransfer.cli import main
    from autotransfer.data.inspect import inspect

    found = inspect(saved_images)
    assert found.modality == "image" and found.counts["test"]["bag"] == 10
    assert found.origin.endswith("Hugging Face dataset, image column 'picture' (Image), "
                                 "label column 'kind' (ClassLabel)")
    main(["inspect", str(saved_images), "--json"])
    assert '"origin"' in capsys.readouterr().out


def test_hub_ids_go_through_load_dataset_and_fail_in_one_line_offline(monkeypatch):
    seen = {}

    def fake_load(repo, config=None):
        seen["args"] = (repo, config)
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode)")

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(DataError, match=r"^hf://datasets/owner/name:cfg: cannot load as a "
                                        r"Hugging Face dataset \(Couldn't reach"):
        load_data("hf://datasets/owner/name:cfg")
    assert seen["args"] == ("owner/name", "cfg")
    # a Path collapses the double slash (the CLI's DATA is a Path): still a hub id
    with pytest.raises(DataError, match=r"hf://datasets/owner/name: cannot load"):
        load_data(Path("hf://datasets/owner/name"))
    assert seen["args"] == ("owner/name", None)
