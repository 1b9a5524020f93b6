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


def test_a_full_disk_falls_back_to_memory_in_one_line_and_leaves_no_entry(fashion_mnist,
                                                                         tmp_path, monkeypatch):
    """The room is checked before a byte is written (a memory-mapped write past the disk's room
    is a SIGBUS, not an error): too little is a DataWarning naming the folder, the room needed
    and free, and the split is encoded in memory, equal to the stored one."""
    import collections
    import shutil as real_shutil

    import pytest

    import autotransfer.data.store as store_module
    from autotransfer.data.dataset import DataWarning

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(store_module.shutil, "disk_usage",
                        lambda path: usage(2**20, 2**20 - 4096, 4096))
    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    with pytest.warns(DataWarning) as caught:
        encoded, _ = PREPROCESS.encode(data, "train")
    (line,) = [str(w.message) for w in caught if "store" in str(w.message)]
    assert "no space left" in line and str(tmp_path / "store") in line
    assert "MiB for this split, 0.0 MiB free" in line and "--data-store" in line
    assert "\n" not in line
    assert not list((tmp_path / "store").glob("*/*")), "nothing half-written left"
    monkeypatch.setattr(store_module.shutil, "disk_usage", real_shutil.disk_usage)
    plain = load_data(fashion_mnist, seed=0)
    plain.store = "memory"
    assert torch.equal(encoded, PREPROCESS.encode(plain, "train")[0])


def test_a_disk_filled_meanwhile_is_the_same_fallback(fashion_mnist, tmp_path, monkeypatch):
    """The blocks are reserved before the memory map is written: ENOSPC there (another process
    filled the disk after the check) is the same fallback, with no partial folder left."""
    import errno

    import pytest

    import autotransfer.data.store as store_module
    from autotransfer.data.dataset import DataWarning

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "posix_fallocate", full)
    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    with pytest.warns(DataWarning, match="no space left on device: .* needs"):
        PREPROCESS.encode(data, "train")
    assert not [p for p in (tmp_path / "store").iterdir() if p.suffix != ".lock"]


def test_a_partial_folder_of_a_dead_writer_is_removed(fashion_mnist, tmp_path):
    """A writer killed mid-write (SIGKILL, a crash) leaves ``<key>.<pid>.tmp``: the next writer
    of that entry removes it (never mapped: a reader maps whole entries only)."""
    import shutil

    data = load_data(fashion_mnist, seed=0)
    data.store = str(tmp_path / "store")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    PREPROCESS.encode(data, "train")  # the entry's key: the folder it wrote
    (entry,) = [p for p in (tmp_path / "store").iterdir() if p.is_dir()]
    key = entry.name
    shutil.rmtree(entry)
    stale = tmp_path / "store" / f"{key}.{dead}.tmp"
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"\x93NUMPY half")
    fresh = load_data(fashion_mnist, seed=0)
    fresh.store = str(tmp_path / "store")
    PREPROCESS.encode(fresh, "train")
    assert not stale.exists() and (entry / "meta.json").is_file()
