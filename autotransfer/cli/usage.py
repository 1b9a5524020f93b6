"""Usage errors of the command line, shown as click shows them, and the fast exit of a
time-budgeted run."""

from __future__ import annotations

import os
import sys

import typer


def click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """``(ClickException, Abort)`` classes of click and of the copy that typer >= 0.2x vendors
    (``typer._click``): the usage errors of the command line are raised as the latter."""
    import click

    errors: list[type] = [click.exceptions.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # a typer that uses click itself
        pass
    else:
        errors.append(ClickException)
    return tuple(errors), (click.exceptions.Abort, typer.Abort)


def _find_context(exc: Exception) -> None:
    """Give a usage error raised without its command's context (click's parser does so for
    ``--port`` without a value) the context of the command being parsed, found in the
    traceback, so that it prints that command's usage line too."""
    if not hasattr(exc, "ctx") or exc.ctx is not None:
        return
    tb, found = exc.__traceback__, None
    while tb is not None:
        ctx = tb.tb_frame.f_locals.get("ctx")
        if ctx is not None and hasattr(ctx, "get_usage") and hasattr(ctx, "command_path"):
            found = ctx  # the innermost: the sub-command's
        tb = tb.tb_next
    if found is not None:
        exc.ctx, exc.cmd = found, found.command  # type: ignore[attr-defined]


def _name_the_value(exc: Exception) -> None:
    """typer checks values with pydantic, whose messages leave out the value: add it
    (``Invalid value for '--workers': Input should be a valid integer, got 'abc'``)."""
    cause = exc.__cause__
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not hasattr(cause, "errors"):
        return
    try:
        given = cause.errors()[0]["input"]  # type: ignore[union-attr]
    except Exception:  # not pydantic's ValidationError after all
        return
    message = message.removeprefix("Value error, ")
    if repr(given) not in message:
        message = f"{message.rstrip('.')}, got {given!r}"
    exc.message = message  # type: ignore[attr-defined]


def show_usage_error(exc: Exception) -> int:
    """Print a click usage error the way click does (the usage line, ``Try '... --help'``, the
    error naming the option and the value given); return its exit status (2)."""
    _name_the_value(exc)
    _find_context(exc)
    exc.show()  # type: ignore[attr-defined]
    return exc.exit_code  # type: ignore[attr-defined]


def exit_at_once(code: int) -> None:
    """End the process now, as a time budget needs and as every command that loaded torch
    does: the exit handlers run and the output is flushed, but the interpreter's teardown of
    torch and the other modules (2-6 s on a 2-core machine) is skipped; every file is already
    written and closed."""
    import atexit
    import contextlib

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe
            stream.flush()
    os._exit(code)
