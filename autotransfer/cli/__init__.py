"""CLI: the ``autotransfer`` command, a thin typer front end over the Python API.

Owns the commands (``app``), what they print (``console``; the leaderboard fitted to the
width: ``leaderboard``; the ranked candidates of ``backbones --rank``: ``ranked``), the entry
point that turns errors into one line and Python option names into flags (``main``), option
values checked
against plugin registries (``choices``), the ``--help`` panels (``panels``), the process the
command runs in (``process``) and usage errors (``usage``); the only part that knows flag
names. May import every other part; nothing imports it (the console script is
``autotransfer.cli:main``).
"""

from autotransfer.cli.app import app
from autotransfer.cli.main import main

__all__ = ["app", "main"]
