"""CLI: the ``autotransfer`` command, a thin typer front end over the Python API.

Owns the commands (``app``) and what they print (``console``); the only part that knows flag
names. May import every other part; nothing imports it (the console script is
``autotransfer.cli:main``).
"""

from autotransfer.cli.app import app, main

__all__ = ["app", "main"]
