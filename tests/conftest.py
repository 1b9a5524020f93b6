import os

# Hub lookups retry for about a minute when offline; tests never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1: the URL of a database owned by a user with a
    password (``s3cret``), so that tests can check that it never shows."""
    import glob
    import shutil
    import subprocess
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL missing: apt-get install postgresql (make test installs it)")
    bindir = Path(found[-1]).parent
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="autotransfer-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100", "start")
    try:
        for sql in ("CREATE USER at PASSWORD 's3cret'", "CREATE DATABASE at OWNER at"):
            run(str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "-v", "ON_ERROR_STOP=1", "-c", sql)
        yield f"postgresql+psycopg://at:s3cret@127.0.0.1:{port}/at"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
