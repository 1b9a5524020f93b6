"""``autotransfer dashboard``: optuna-dashboard on 127.0.0.1, read by a real headless Chromium."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotransfer.cli import main
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from services import free_port

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=8000",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("Chromium missing: apt-get install chromium (make test installs it)")


def _dom(url: str, profile) -> str:
    """The page's DOM after its scripts have loaded the study (a fresh browser profile)."""
    run = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _listening_address(port: int) -> str:
    """The local address of the socket listening on ``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    return "none"


@pytest.mark.slow
def test_dashboard_shows_the_study_its_trials_and_its_note(class_folders, tmp_path):
    storage = f"sqlite:///{tmp_path / 'watched.db'}"
    space = parse_space({
        "backbones": [{"id": "timm/test_efficientnet", "pretrained": False}],
        "epochs": 1, "pruner": "none",
        "params": {"image_size": 32, "lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
    })
    search(class_folders, space, trials=2, storage=storage, study_name="watched-study",
           out=tmp_path / "out")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", "dashboard",
         "--storage", storage, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _listening_address(port) == "none":
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
            time.sleep(0.2)
        assert _listening_address(port) == "127.0.0.1"  # not reachable from other machines
        base = f"http://127.0.0.1:{port}/dashboard"
        studies = _dom(f"{base}/", tmp_path / "p1")
        assert "watched-study" in studies
        trials = _dom(f"{base}/studies/1/trials", tmp_path / "p2")
        assert "Trial 0" in trials and "Trial 1" in trials
        for attr in ("backbone", "timm/test_efficientnet", "worker_pid", "seconds_per_epoch"):
            assert attr in trials, attr
        note = _dom(f"{base}/studies/1/note", tmp_path / "p3")
        assert "Best so far" in note and "Search space" in note
        assert str(class_folders) in note
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dashboard_bad_storage_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage sqlite:///") and "no such database file" in err
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(SystemExit):
        main(["dashboard", "--storage", "postgresql+psycopg://u:s3cret@127.0.0.1:1/db"])
    err = capsys.readouterr().err.strip()
    assert "u:***@127.0.0.1:1/db" in err and "s3cret" not in err and "\n" not in err
