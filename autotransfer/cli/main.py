"""The console entry point: every error one line and an exit code, warnings one line, and the
one place where Python option names become flags."""

from __future__ import annotations

import contextlib
import os
import sys

from rich.markup import escape

from autotransfer.cli import process
from autotransfer.cli.app import app
from autotransfer.cli.console import err_console
from autotransfer.cli.usage import click_exceptions, exit_at_once, show_usage_error
from autotransfer.errors import AutotransferError, OptionError


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings for the user are one line on stderr, without the source location."""
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False,
                      soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error is one line on stderr and a non-zero exit status.

    Domain errors exit 1, usage errors 2, an interrupted search 130 (stopped by SIGTERM 143,
    SIGHUP 129); ``--debug`` (anywhere on the command line) shows the traceback instead.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    process.started_as_command(argv is None, args)
    import warnings

    warnings.showwarning = _show_warning
    if hasattr(sys.stdout, "reconfigure"):  # live progress also when piped to a file or tee
        sys.stdout.reconfigure(line_buffering=True)
    try:
        # typer turns Ctrl-C into the code 130; usage errors come out as exceptions
        with _stop_signals_interrupt():
            code = app(args=args, prog_name="autotransfer", standalone_mode=False)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        # a stop signal raised inside a library's cleanup can surface as another error (optuna's
        # trial loop: UnboundLocalError); it is the stop, not an internal error
        code = 130 if _signal_came() else _report(exc, debug)
    if code in (0, None) and _signal_came():  # the interrupt was swallowed (a gc callback):
        code = 130                             # the stop flag ended the search early
    if code == 130:
        code = _stop_status()
    code = code if isinstance(code, int) else 0
    # the console command skips the interpreter's teardown of torch (2-5 s of a 30 s search,
    # benchmarks/overhead.py): its files are written and closed; the exit handlers still run
    if argv is None and ("torch" in sys.modules
                         or any(a.split("=")[0] == "--time-budget" for a in args)):
        exit_at_once(code)
    if code:
        sys.exit(code)


def _on_stop_signal(signum, frame) -> None:
    from autotransfer.study.workers import _interrupt  # loads only when a signal comes

    _interrupt(signum, frame)  # KeyboardInterrupt, as Ctrl-C; the signal is remembered


@contextlib.contextmanager
def _stop_signals_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt for the whole command, as Ctrl-C does, so
    that a search stopped before or after its trials (pre-screen, transfer effect) also writes
    what finished; the trial loop has its own handlers (``autotransfer.study.workers``)."""
    import signal

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {}
    try:
        for name in names:
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, _on_stop_signal)
    except ValueError:  # not the main thread: leave the handlers alone
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_came() -> bool:
    """Whether this command received a stop signal (the stop flag's module is loaded only when
    a search or a signal needed it)."""
    workers = sys.modules.get("autotransfer.study.workers")
    return workers is not None and workers.stopped_by() is not None


def _stop_status() -> int:
    """Print how the command was stopped; the exit status is 128 + the signal's number
    (Ctrl-C 130, SIGTERM 143, SIGHUP 129), as a shell reports a process killed by it."""
    import signal

    from autotransfer.study.workers import stopped_by

    signum = stopped_by(forget=True) or signal.SIGINT
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    err_console.print(f"{how}; the study is saved and resumes with the same command")
    return 128 + int(signum)


#: Python parameter -> CLI flag, where the flag is not ``--`` plus the name with dashes.
FLAGS = {"study_name": "--study", "texts": "--text", "k": "--prescreen"}


def flag(option: str) -> str:
    """The command-line flag of a Python API parameter (``cache_memory`` -> ``--cache-memory``);
    anything else (an environment variable) is shown as it is. The one place where Python
    names become flags."""
    if option in FLAGS:
        return FLAGS[option]
    return "--" + option.replace("_", "-") if option.islower() else option


def _report(exc: Exception, debug: bool) -> int:
    """Print ``exc`` as one line (or re-raise it with ``--debug``); return the exit code.

    A usage error of the command line (unknown command or option, missing argument, bad
    value) is the user's: click's usage line, the error and ``Try '... --help'``, exit 2.
    """
    errors, aborts = click_exceptions()
    if isinstance(exc, errors):
        return show_usage_error(exc)
    if isinstance(exc, aborts):
        return 130
    if debug:
        raise exc
    if isinstance(exc, OptionError):  # the Python name of the option becomes its flag
        message = flag(exc.option) + exc.problem
    elif isinstance(exc, AutotransferError):
        message = str(exc)
    else:  # a bug: still one line, and the way to see more
        message = (f"internal error: {type(exc).__name__}: {exc}; run again with --debug "
                   "for the traceback, and please report it")
    err_console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return 1
