"""The process the command runs in: restarted once with tcmalloc preloaded where it helps.

A leaf of the CLI: ``main`` says how the process started, ``app``'s ``search`` restarts it once
its input is checked; neither imports the other for it.
"""

from __future__ import annotations

import os
import sys


def preload_tcmalloc() -> None:
    """Re-run this command with tcmalloc preloaded when it is installed and not yet in use.

    glibc's allocator returns training buffers to the system and takes them back every step;
    tcmalloc keeps them (benchmarks/throughput.py measures the gain). AUTOTRANSFER_TCMALLOC=0
    turns this off.
    """
    if os.environ.get("AUTOTRANSFER_TCMALLOC") == "0" or "tcmalloc" in os.environ.get(
        "LD_PRELOAD", ""
    ):
        return
    import ctypes.util

    if not sys.platform.startswith("linux") or not ctypes.util.find_library("tcmalloc_minimal"):
        return
    preload = " ".join(filter(None, ["libtcmalloc_minimal.so.4", os.environ.get("LD_PRELOAD")]))
    env = {**os.environ, "LD_PRELOAD": preload, "AUTOTRANSFER_TCMALLOC": "0"}
    os.execve(sys.executable, [sys.executable, "-m", "autotransfer.cli", *sys.argv[1:]], env)


#: Commands that run models (the allocator matters); the others start once, without torch.
#: ``search`` re-executes itself once its space is checked (:func:`reexec_with_tcmalloc`).
_COMPUTES = frozenset({"train", "predict", "prescreen"})
_standalone = False  # run as the ``autotransfer`` command (not ``main([...])`` in a test)


def started_as_command(standalone: bool, args: list[str]) -> None:
    """Called once by :func:`autotransfer.cli.main.main`: whether this process is the console
    command (``standalone``), and its arguments; a command in ``_COMPUTES`` restarts at once."""
    global _standalone
    _standalone = standalone
    if standalone and set(args) & _COMPUTES:  # listing, --help and errors start only once
        preload_tcmalloc()


def reexec_with_tcmalloc() -> None:
    """For a command that has checked its input: restart with tcmalloc, as the console
    command only (a test calling ``main([...])`` keeps its process)."""
    if _standalone:
        preload_tcmalloc()
