"""The encoded-data store: splits decoded once per (data, preprocessing), memory-mapped by every
trial and process, written atomically, keyed by content and preprocessing."""

import os
import subprocess
import sys
from pathlib import Path

import torch

import autotransfer.data._images as images_module
from autotransfer.data import ImagePreprocess, load_data
from autotransfer.data.store import store_directory
from autotransfer.finetune.cache import ActivationCache
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin, tiny_cnn_backbone

PREPROCESS = ImagePreprocess(32, (0.5,) * 3, (0.5,) * 3, "bilinear", 1.0)
SPACE = {"backbones": ["fake/tiny-cnn"], "epochs": 1, "pruner": "none",
         "params": {"lr": 3e-3, "freeze_fraction": 0.0}}
SEARCH_IN_A_PROCESS = """
import sys
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import FakeZoo, registered_plugin
data, store, out = sys.argv[1:4]
space = parse_space({space!r})
with registered_plugin(FakeZoo()):
    search(data, space, trials=1, storage=f"sqlite:///{{out}}.db", out=out, device="cpu",
           data_store=store)
"""


def entries(store: Path) -> dict[str, os.stat_result]:
    """The store's ``.npy`` files with their stat (inode, mtime), entries only (no temp)."""
    return {str(f.relative_to(store)): f.stat() for f in store.glob("*/*.npy")}


def mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def counting_decoder(monkeypatch) -> list:
    calls = []
    original = images_module.load_image

    def load_image(path, preprocess):
        calls.append(path)
        return original(path, preprocess)

    monkeypatch.setattr(images_module, "load_image", load_image)
    return calls


def test_a_second_search_in_another_process_maps_what_the_first_wrote(fashion_mnist, tmp_path,
                                                                      monkeypatch):
    store = tmp_path / "store"
    script = SEARCH_IN_A_PROCESS.format(space=SPACE)
    subprocess.run([sys.executable, "-c", script, str(fashion_mnist), str(store),
                    str(tmp_path / "first")], check=True, env=os.environ.copy())
    written = entries(store)
    assert len(written) == 3 and not list(store.glob("*.tmp"))  # train, val, test: once each
    calls = counting_decoder(monkeypatch)
    with registered_plugin(FakeZoo()):
        result = search(fashion_mnist, parse_space(SPACE), trials=1, device="cpu",
                        storage=f"sqlite:///{tmp_path}/second.db", out=tmp_path / "second",
                        data_store=store)
    assert result.best is not None and calls == []  # nothing decoded again
    again = entries(store)
    assert again.keys() == written.keys()
    assert all(again[k].st_ino == written[k].st_ino and again[k].st_mtime_ns
               == written[k].st_mtime_ns for k in written)  # the same files, not rewritten


def test_stored_splits_are_memory_mapped_and_equal_the_in_memory_ones(fashion_mnist, tmp_path):
    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    stored, labels = PREPROCESS.encode(data, "train")
    (npy,) = (tmp_path / "store").glob("*/images.npy")
    assert str(npy) in mapped_files()  # a file mapping, not anonymous memory
    plain = load_data(fashion_mnist, seed=0)
    plain.store = "memory"
    in_memory, same_labels = PREPROCESS.encode(plain, "train")
    assert stored.shape == (240, 3, 32, 32) and stored.dtype == torch.uint8
    assert torch.equal(stored, in_memory) and torch.equal(labels, same_labels)
    assert not list((tmp_path / "store").glob("*/*.npy"))[1:]  # memory wrote nothing


def test_the_key_changes_with_the_preprocessing_and_the_files(fashion_mnist, tmp_path,
                                                              monkeypatch):
    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    PREPROCESS.encode(data, "val")
    PREPROCESS.with_size(24).encode(data, "val")  # other size: another entry
    assert len(entries(tmp_path / "store")) == 2
    fresh = load_data(fashion_mnist, seed=0)  # a new process would start like this
    fresh.store = data.store
    calls = counting_decoder(monkeypatch)
    PREPROCESS.encode(fresh, "val")
    assert calls == [] and len(entries(tmp_path / "store")) == 2  # same key: reused
    # a file of the split changes: another key, the split is encoded again
    changed = load_data(fashion_mnist, seed=0)
    changed.store = data.store
    victim = changed.val.paths[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    PREPROCESS.encode(changed, "val")
    assert len(calls) == len(changed.val) and len(entries(tmp_path / "store")) == 3


def test_concurrent_processes_write_one_entry(fashion_mnist, tmp_path):
    encode = (
        "import sys\nfrom autotransfer.data import ImagePreprocess, load_data\n"
        "data = load_data(sys.argv[1], seed=0)\ndata.store = sys.argv[2]\n"
        "x, _ = ImagePreprocess(40, (0.5,) * 3, (0.5,) * 3).encode(data, 'train')\n"
        "print(int(x.sum()))\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", encode, str(fashion_mnist),
                              str(tmp_path / "store")], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    sums = [run.communicate(timeout=300)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0] and sums[0] == sums[1]
    assert len(entries(tmp_path / "store")) == 1 and not list((tmp_path / "store").glob("*.tmp"))


def test_the_activation_cache_works_on_stored_inputs(fashion_mnist, tmp_path):
    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    cache = ActivationCache(directory=tmp_path / "activations")
    params = defaults()
    params.update(augment="none", image_size=32, lr=1e-3, batch_size=32, freeze_fraction=1.0)
    first = Trainer(tiny_cnn_backbone(), data, params, device=torch.device("cpu"), cache=cache)
    first.fit(1)
    second = Trainer(tiny_cnn_backbone(), data, {**params, "lr": 3e-3},
                     device=torch.device("cpu"), cache=cache)
    second.fit(1)
    assert first.cache_status == "miss" and second.cache_status == "hit"
    inputs, _ = PREPROCESS.encode(data, "train")
    assert cache.input_digest(inputs).startswith("store:")  # keyed without reading every byte


def test_the_store_folder_comes_from_the_data_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOTRANSFER_DATA_STORE", str(tmp_path / "env"))
    assert store_directory() == tmp_path / "env"
    data = type("Data", (), {"store": "memory"})()
    assert store_directory(data) is None  # search(data_store="memory"), --data-store memory
    monkeypatch.setenv("AUTOTRANSFER_DATA_STORE", "memory")
    assert store_directory() is None
    monkeypatch.delenv("AUTOTRANSFER_DATA_STORE")
    monkeypatch.setenv("AUTOTRANSFER_CACHE_DIR", str(tmp_path / "cache"))
    assert store_directory() == tmp_path / "cache" / "encoded"
