"""The ``autotransfer`` command line: a thin front end over the Python API.

Over 400 lines for a reason: the typer declarations of nine commands and their options (the
``--help`` text) are most of it; each command's body is a few lines over the API. ``search``
is over 60 lines for the same reason (its docstring is its ``--help``, so the reason is here).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from autotransfer import __version__
from autotransfer.cli.choices import known_modality
from autotransfer.cli.console import (
    ConsoleProgress,
    _outcome_lines,
    _prescreen_table,
    console,
    ensemble_table,
    err_console,
    leaderboard_table,
)
from autotransfer.cli.panels import Command, Group, arrange
from autotransfer.errors import AutotransferError, OptionError
from autotransfer.study.options import PRESCREEN_METHODS
from autotransfer.study.results.intervals import tie_note
from autotransfer.study.results.report import fmt, with_ensemble
from autotransfer.study.store.storage import DEFAULT_HEARTBEAT, DEFAULT_STORAGE
from autotransfer.study.trackers import TRACKERS

# Options with a fixed set of values: click rejects any other value as a usage error (exit 2).
# (A modality is any registered one, plugins' included: checked by known_modality, also exit 2.)
RankBy = Literal[PRESCREEN_METHODS]  # type: ignore[valid-type]
TrackWith = Literal[tuple(TRACKERS)]  # type: ignore[valid-type]
Device = Literal["cpu", "gpu"]  # ranking.DEVICES
RefitOn = Literal["train+val", "train"]  # refit.REFIT_ON (a test checks)
ExportTo = Literal["onnx"]  # export.EXTRA_EXPORTS
QuantizeTo = Literal["int8"]  # onnx_export.QUANTIZE
Runtime = Literal["auto", "onnxruntime", "pytorch"]  # predict.RUNTIMES

# How the data-reading commands (search, prescreen, inspect, train) are told what to read.
DetectedModality = Annotated[str | None, typer.Option(
    help="image, text, audio or a plugin's (default: detected).", callback=known_modality,
    metavar="<name>")]
# None, not the default names, so that a study records only the columns it was given or read
TextColumn = Annotated[str | None, typer.Option(
    help="Text column of CSV/TSV/JSONL text data (default: text).")]
LabelColumn = Annotated[str | None, typer.Option(
    help="Label column of CSV/TSV/JSONL text data or of a Hugging Face dataset (default: "
         "label).")]
ImageColumn = Annotated[str | None, typer.Option(
    help="Image column of a Hugging Face dataset (default: its Image feature).")]
AudioColumn = Annotated[str | None, typer.Option(
    help="Audio column of a Hugging Face dataset (default: its Audio feature).")]

app = typer.Typer(
    help="Pick and fine-tune a pretrained backbone with Optuna.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Group,
)


def _show_version(value: bool) -> None:
    if value:
        console.print(f"autotransfer {__version__}")
        raise typer.Exit()


@app.callback(context_settings={"help_option_names": ["--help", "-h"]},
              epilog="Add --debug anywhere to see the traceback of an error.")
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version."
    ),
    trace_hooks: bool = typer.Option(
        False, "--trace-hooks", help="Print every plugin hook call to stderr."
    ),
) -> None:
    """Pick and fine-tune a pretrained backbone with Optuna."""
    if trace_hooks:
        from autotransfer.contract.manager import enable_tracing

        enable_tracing()


@app.command()
@arrange
def search(
    data: Path = typer.Argument(
        ..., help="Folder of class sub-folders, train/ and val/ (and test/), a CSV, TSV or "
        "JSONL file, or a Hugging Face dataset (save_to_disk folder, Parquet/Arrow, "
        "hf://datasets/OWNER/NAME[:CONFIG])."
    ),
    space: Path | None = typer.Option(
        None, "--space", "-s", help="Search-space YAML file (default: the shipped space of the "
        "data's modality, over backbones that ship in pip packages; docs/search-spaces.md)."),
    trials: int | None = typer.Option(None, help="Total finished trials the study should reach."),
    timeout: float | None = typer.Option(
        None, help="Stop starting trials after S seconds (Optuna's meaning: the running trial "
        "finishes, then the results are written)."
    ),
    time_budget: float | None = typer.Option(
        None, help="End the whole run, start-up and final writes included, within S seconds: "
        "the running trial stops at an epoch or batch boundary and completes with its last "
        "scored epoch (reason 'time budget'; pruned if it had none); shared by every worker "
        "of the study."
    ),
    storage: str = typer.Option(DEFAULT_STORAGE, help="SQLAlchemy URL of the study database, or journal:///path/study.log."),
    study: str | None = typer.Option(None, help="Study name; an existing study resumes."),
    out: Path = typer.Option(Path("autotransfer-out"), help="Folder for best.yaml and results."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, help="Seed of the sampler, the split and the training."),
    trust_remote_code: bool = typer.Option(
        False, help="Let backbones run code from their checkpoint (Hugging Face); off by default."
    ),
    modality: DetectedModality = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    image_column: ImageColumn = None,
    audio_column: AudioColumn = None,
    data_store: str | None = typer.Option(
        None, help="Folder where encoded splits are memory-mapped, shared by the workers, or "
        "'memory' (default: AUTOTRANSFER_DATA_STORE, else ~/.cache/autotransfer/encoded)."
    ),
    workers: int = typer.Option(1, help="Worker processes on this machine (threads split)."),
    heartbeat: int = typer.Option(
        DEFAULT_HEARTBEAT, help="Seconds between heartbeats; a trial silent 3x is retried."
    ),
    keep_best: bool = typer.Option(
        False, help="Keep the best trial's model (OUT/best-model, ready for predict)."
    ),
    cache: bool = typer.Option(
        True, "--cache/--no-cache",
        help="Compute the frozen layers' outputs once and reuse them across epochs and trials.",
    ),
    cache_memory: str | None = typer.Option(
        None, help="Memory bound of that cache per process, e.g. 4G (default 2G, at most 1/4 "
        "of the device's memory)."
    ),
    cache_dir: Path | None = typer.Option(
        None, help="Disk tier for that cache, shared by the workers (default: none)."
    ),
    cache_views: int | None = typer.Option(
        None, min=0, help="Random augmented views per image that the cache holds for crop_flip "
        "(an approximation; default 8, at most the epochs; 0: train such trials live)."
    ),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the trained layers."),
    prescreen: int | None = typer.Option(
        None, help="Keep the K backbones that rank best on frozen features (see prescreen)."
    ),
    prescreen_by: RankBy | None = typer.Option(
        None, help="Pre-screen ranking: logme, knn, params or imagenet."
    ),
    warm_start: int | None = typer.Option(
        None, help="Enqueue the N best configurations of the most similar past datasets."
    ),
    history: bool | None = typer.Option(
        None, "--history/--no-history",
        help="Record finished trials and dataset meta-features in the storage "
        "(default: on, unless AUTOTRANSFER_HISTORY=0).",
    ),
    references: bool = typer.Option(
        True, "--references/--no-references",
        help="Also run a linear probe and a first fine-tune (a recipe known to work for its "
        "family) of each backbone; under --time-budget the best-ranked first fine-tune runs "
        "first (they count towards --trials).",
    ),
    transfer_effect: bool | None = typer.Option(
        None, "--transfer-effect/--no-transfer-effect",
        help="Train the best configuration again from random weights and report the "
        "difference (default: when at least 8 trials completed).",
    ),
    track: TrackWith | None = typer.Option(
        None, help="Also log every trial, epoch by epoch, to this experiment tracker "
        "(mlflow or wandb; see docs/guides/tracking.md)."
    ),
    tracking_uri: str | None = typer.Option(
        None, help="The tracker's URI (MLflow default: MLFLOW_TRACKING_URI; W&B: the "
        "server's base URL; WANDB_MODE=offline writes local files)."
    ),
) -> None:
    """Search for the best backbone, freezing depth and learning rates for DATA."""
    from autotransfer.cli.process import reexec_with_tcmalloc
    from autotransfer.finetune.records import trial_records
    from autotransfer.study.checks import check_space
    from autotransfer.study.results.report import backbone_id, state_counts
    from autotransfer.study.store.storage import mask_url
    from autotransfer.study.study import search as run_search

    if trials is None and timeout is None and time_budget is None:
        raise AutotransferError(
            "give --trials N, --timeout S or --time-budget S (or several) to bound the search")
    given = time_budget  # as given; what the search gets is less its start-up
    if time_budget is not None:
        from autotransfer.study.budget.timebudget import (
            STARTUP_FLOOR,
            budget_spent_line,
            process_age,
        )

        if not time_budget > 0:
            raise OptionError("time_budget", f" must be > 0 seconds, got {time_budget}")
        # the budget counts from this process's start: the interpreter and imports are in it
        if time_budget - process_age() < STARTUP_FLOOR:  # spent before the data is read
            raise AutotransferError(budget_spent_line(time_budget, process_age()))
    started, started_at = time.perf_counter(), time.time()
    if space is not None:
        check_space(space)  # a bad space is reported before torch and the storage load
    reexec_with_tcmalloc()  # now that the search will run
    console.print(f"autotransfer search {data} with "
                  f"{space or 'the default space of its modality'} -> {mask_url(storage)}")
    if given is not None:  # counted up to the call: the checks above take seconds when busy
        time_budget = max(1e-3, given - process_age())
    result = run_search(
        data, space, trials=trials, timeout=timeout, time_budget=time_budget,
        storage=storage, study_name=study,
        out=out, device=device, seed=seed, workers=workers, heartbeat=heartbeat,
        progress=ConsoleProgress(trials), trust_remote_code=trust_remote_code,
        modality=modality, text_column=text_column, label_column=label_column,
        image_column=image_column, audio_column=audio_column, data_store=data_store,
        keep_best=keep_best,
        cache=cache, cache_memory=cache_memory, cache_dir=cache_dir, cache_views=cache_views,
        compile=compile,
        prescreen=prescreen, prescreen_by=prescreen_by, history=history, warm_start=warm_start,
        references=references, transfer_effect=transfer_effect, track=track,
        tracking_uri=tracking_uri,
    )
    for problem in result.worker_errors:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False)
    metric = result.best["metric"] if result.best else "score"
    console.print(leaderboard_table(with_ensemble(result.leaderboard, result.best), metric,
                                    width=console.width))
    note = tie_note(result.leaderboard)  # a lower val score ranked first: why, in one line
    if note:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    counts = state_counts(result.leaderboard)
    from autotransfer.study.budget.timebudget import nothing_completed_line, process_age

    age = process_age()  # of the process (interpreter and imports included); 0.0 without /proc
    launched = started_at - age + (time.perf_counter() - started) if age else started_at
    first = [r.first_batch_at - launched for r in trial_records(result.study)
             if (r.first_batch_at or 0) >= started_at]  # this run's trials, from the launch
    console.print(
        f"study {result.study.study_name!r}: {counts['complete']} complete, "
        f"{counts['pruned']} pruned, {counts['fail']} failed; "
        f"{time.perf_counter() - started:.0f}s"
        + (f" (first trial's first batch after {min(first):.1f}s)" if first else "")
    )
    if result.best is None:  # none completed, or none within the space's constraints
        raise AutotransferError(next(
            (w for w in result.warnings if w.startswith("no trial meets the constraints")),
            nothing_completed_line(result.study, started_at, given,
                                   process_age() or time.perf_counter() - started)))
    best = result.best
    test = f", test {best['test_score']:.4f}" if "test_score" in best else ""
    backbone = backbone_id(best)
    console.print(
        f"[bold green]best[/]: {backbone} val {best['metric']} {best['val_score']:.4f}{test}"
        f" -> {result.best_path}"
    )
    for line in _outcome_lines(best):
        console.print(line, highlight=False)
    if best.get("ensemble"):
        from autotransfer.study.results.ensemble import ensemble_line

        console.print(escape(ensemble_line(best["ensemble"])), highlight=False, soft_wrap=True)
    if best.get("soup"):
        from autotransfer.study.results.soup import soup_line

        console.print(escape(soup_line(best["soup"])), highlight=False, soft_wrap=True)
    if keep_best and (out / "best-model").is_dir():
        console.print(f"best trial's model -> {out / 'best-model'} (autotransfer predict "
                      f"{out / 'best-model'} FILES)", highlight=False)


@app.command()
def prescreen(
    data: Path = typer.Argument(
        ..., help="Folder of class sub-folders, train/ and val/ (and test/), CSV/TSV/JSONL, "
        "or a Hugging Face dataset (save_to_disk folder, Parquet/Arrow, hf://datasets/...)."
    ),
    space: Path = typer.Option(..., "--space", "-s", help="Search-space YAML file."),
    by: RankBy | None = typer.Option(
        None, help="Ranking: logme, knn, params or imagenet (default: the benchmark's winner)."
    ),
    samples: int = typer.Option(300, help="Training samples embedded per backbone (stratified)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, help="Seed of the sample and the split."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
    trust_remote_code: bool = typer.Option(False, help="See search --trust-remote-code."),
    modality: DetectedModality = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    image_column: ImageColumn = None,
    audio_column: AudioColumn = None,
) -> None:
    """Rank the space's backbones by transferability from frozen features, seconds each."""
    import json

    from autotransfer.data import check_data, load_data
    from autotransfer.data.checks import check_modality
    from autotransfer.finetune.device import device_for
    from autotransfer.space.schema import load_space
    from autotransfer.study import prescreen as ps

    by = by or ps.DEFAULT_BY
    parsed = load_space(space)
    torch_device = device_for(device)
    dataset = load_data(data, val_fraction=parsed.val_fraction, seed=seed, modality=modality,
                        text_column=text_column, label_column=label_column,
                        image_column=image_column, audio_column=audio_column)
    check_data(dataset)
    parsed = _expanded_now(parsed, dataset.modality)
    check_modality([spec.id for spec in parsed.backbones], dataset)

    def show(score) -> None:
        if not as_json:
            state = f"[red]{escape(score.error)}[/]" if score.error else "ok"
            err_console.print(f"  {escape(score.label)}: {score.seconds:.1f}s {state}",
                              highlight=False)

    ranking = ps.prescreen(dataset, parsed, samples=samples, by=by, device=torch_device,
                           seed=seed, trust_remote_code=trust_remote_code, on_score=show)
    if as_json:
        typer.echo(json.dumps(ps.as_json(ranking, by), indent=2))
        return
    console.print(_prescreen_table(ranking, by))


@app.command()
def inspect(
    data: Path = typer.Argument(
        ..., help="Folder of class sub-folders, train/ and val/ (and test/), CSV/TSV/JSONL, "
        "or a Hugging Face dataset (save_to_disk folder, Parquet/Arrow, hf://datasets/...)."
    ),
    modality: DetectedModality = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    image_column: ImageColumn = None,
    audio_column: AudioColumn = None,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show what a search would read from DATA (classes, counts, skipped files), no training."""
    import json

    from autotransfer.data.inspect import inspect as run_inspect

    try:
        found = run_inspect(data, modality=modality, text_column=text_column,
                            label_column=label_column, image_column=image_column,
                            audio_column=audio_column)
    except AutotransferError as exc:  # unreadable at all: --json still prints its one object
        if as_json:
            typer.echo(json.dumps({"modality": None, "classes": [], "counts": {}, "skipped": [],
                                   "warnings": [], "error": str(exc), "origin": "",
                                   "duplicates": [], "contradictions": []},
                                  indent=2, ensure_ascii=False))
        raise
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    else:
        console.print(f"{escape(str(data))}: {found.modality}, {len(found.classes)} classes",
                      highlight=False, soft_wrap=True)
        if found.origin:
            console.print(escape(found.origin), highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("class")
        for split in found.counts:
            table.add_column(split, justify="right")
        for cls in found.classes:
            table.add_row(escape(cls), *(str(c[cls]) for c in found.counts.values()))
        console.print(table)
        for path, reason in found.skipped:
            console.print(f"skipped {escape(str(path))}: {escape(reason)}", highlight=False)
        for warning in found.warnings:
            console.print(f"warning: {escape(warning)}", highlight=False, soft_wrap=True)
    if found.error:
        raise AutotransferError(found.error)


@app.command()
def dashboard(
    storage: str = typer.Option(DEFAULT_STORAGE, help="SQLAlchemy URL of the study database, or journal:///path/study.log."),
    port: int = typer.Option(8080, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 opens it to all."),
) -> None:
    """Watch the studies in STORAGE live in optuna-dashboard."""
    from autotransfer.study.store.storage import make_storage, mask_url

    if not 0 < port < 65536:
        raise AutotransferError(f"--port must be in 1..65535, got {port}")
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise AutotransferError("optuna-dashboard is not installed: pip install optuna-dashboard"
                                ) from None
    study_storage = make_storage(storage, must_exist=True)
    console.print(f"optuna-dashboard for {mask_url(storage)} at http://{host}:{port}/dashboard/"
                  " (Ctrl-C stops it)", highlight=False, soft_wrap=True)
    try:
        run_server(study_storage, host=host, port=port)
    except OSError as exc:
        raise AutotransferError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                                ) from None


@app.command()
def plugins() -> None:
    """List the loaded plugins with their versions and hooks."""
    from autotransfer.contract.manager import get_plugins, plugin_errors

    table = Table()
    for column in ("plugin", "version", "hooks"):
        table.add_column(column)
    for plugin in get_plugins():
        table.add_row(str(plugin["name"]), str(plugin["version"]), ", ".join(plugin["hooks"]))
    console.print(table)
    for name, error in plugin_errors().items():
        err_console.print(f"plugin {name!r} failed to load: {error}")


@app.command()
def backbones(
    pattern: str | None = typer.Argument(
        None, help="Only ids containing this text; ZOO/... lists that zoo only (e.g. packaged/)."
    ),
    modality: str | None = typer.Option(None, help="image, text, audio or a plugin's.",
                                        callback=known_modality,
                                        metavar="<name>"),
    rank: int | None = typer.Option(None, help="Show the N best candidates of --modality by "
                                    "their published score (no download)."),
    max_params: str | None = typer.Option(None, help="With --rank: at most this many "
                                          "parameters (10M, 500K)."),
    min_throughput: float | None = typer.Option(None, help="With --rank: at least this many "
                                                "images/s (CPU at batch 1, or --device gpu)."),
    device: Device = typer.Option("cpu", help="With --rank: the throughput row, cpu or gpu."),
    license: str | None = typer.Option(None, help="With --rank: licence containing this text."),
    online: bool = typer.Option(False, help="With --rank: read the current published tables "
                                "(default: the shipped snapshot)."),
    max_latency_ms: float | None = typer.Option(
        None, help="With --rank: drop candidates whose prior latency on this machine (ms at "
        "batch 1) is over 2x this; implies --prior."),
    prior: bool = typer.Option(False, help="With --rank: add the prior latency on this machine "
                               "(ms at batch 1: the published CPU row or GMACs, scaled by "
                               "a timing here; imports torch, a few seconds)."),
    front: Device | None = typer.Option(None, help="With --rank: keep only the accuracy/"
                                        "throughput front on this row (cpu or gpu)."),
    as_json: bool = typer.Option(False, "--json", help="With --rank: print JSON."),
) -> None:
    """List the backbone ids that the plugins offer, or rank them with --rank."""
    from autotransfer.contract.backbone import split_id
    from autotransfer.contract.collect import get_registry

    if rank is not None:
        _ranked(modality, rank, max_params, min_throughput, device, license, online, as_json,
                max_latency_ms=max_latency_ms, prior=prior or max_latency_ms is not None,
                front=front)
        return

    registry = get_registry()
    zoo = split_id(pattern)[0] if pattern and "/" in pattern else None
    if zoo not in registry.zoos():  # a pattern that names no zoo: every zoo is listed
        zoo = None
    entries = [
        e for e in registry.entries(modality, zoo) if pattern is None or pattern in e.id
    ]
    for entry in entries:
        params = f"{entry.params / 1e6:.2f}M" if entry.params else "-"
        typer.echo(f"{entry.id}\t{entry.modality}\t{params}\t{entry.description}")
    err_console.print(f"{len(entries)} backbones")


def _ranked(modality: str | None, n: int, max_params: str | None, min_throughput: float | None,
            device: str, license: str | None, online: bool, as_json: bool, *,
            max_latency_ms: float | None = None, prior: bool = False,
            front: str | None = None) -> None:
    from autotransfer.cli.ranked import ranking_entries, show_ranked
    from autotransfer.contract.ranking import parse_count
    from autotransfer.contract.ranking import rank as rank_entries

    if modality is None:
        raise OptionError("rank", " needs --modality (image, text, audio or a plugin's)")
    entries = ranking_entries(modality, online=online)
    if max_latency_ms is not None and max_latency_ms <= 0:
        raise OptionError("max_latency_ms", f" must be > 0, got {max_latency_ms!r}")
    ranked = rank_entries(entries, None if max_latency_ms else n, device=device, license=license,
                          max_params=parse_count(max_params, "max_params")
                          if max_params else None, min_throughput=min_throughput, front=front)
    priors, note = None, None
    if prior:
        from autotransfer.cli.ranked import prior_device
        from autotransfer.study.ranked import within_latency

        if max_latency_ms is not None:
            ranked = within_latency(ranked, max_latency_ms, prior_device(device))[0]
        ranked = ranked[:n]
        priors, note = priors_of(ranked, prior_device(device))
    show_ranked(ranked, device=device, as_json=as_json, considered=len(entries), priors=priors,
                prior_note=note)


def _expanded_now(space, modality: str):
    """A ranked space's ids for a command that has no study (``prescreen``), said in one line
    on stderr; a space that lists its ids as it is."""
    from autotransfer.study.ranked import expand_space

    expanded, note = expand_space(None, space, modality,
                                  say=lambda line: err_console.print(line, highlight=False))
    if note is not None:
        err_console.print(note, highlight=False)
    return expanded


def priors_of(entries, device: str):
    """``({id: DevicePrior}, how they were made)`` of ``entries`` on ``device``."""
    from autotransfer.study.budget.prior import describe, device_constant, prior_of

    constant = device_constant(device)
    return ({e.id: p for e in entries if (p := prior_of(e, constant)) is not None},
            describe(constant))


@app.command()
def train(
    best: Path = typer.Argument(..., help="best.yaml written by autotransfer search."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    data: Path | None = typer.Option(None, help="Dataset (default: the search's, from best.yaml)."),
    refit_on: RefitOn = typer.Option("train+val", help="train+val (default) or train (the search's "
                                 "split, which reproduces its validation score)."),
    epochs: int | None = typer.Option(
        None, help="Epochs (default: what the picked trial trained, replayed: its "
                   "continuations, and the planned length's schedule of a trial the time "
                   "budget stopped early)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    seed: int | None = typer.Option(
        None, help="Seed of the training (default: the best trial's, which it repeats)."
    ),
    trust_remote_code: bool = typer.Option(False, help="Let a Hugging Face checkpoint run code."),
    modality: DetectedModality = None,
    text_column: str | None = typer.Option(None, help="Text column (default: the search's)."),
    label_column: str | None = typer.Option(None, help="Label column (default: the search's)."),
    image_column: str | None = typer.Option(None, help="Image column (default: the search's)."),
    audio_column: str | None = typer.Option(None, help="Audio column (default: the search's)."),
    trial: int | None = typer.Option(
        None, "--trial", help="Refit this trial of the search (e.g. a member of best.yaml's "
        "pareto_front) instead of the picked one."
    ),
    export: ExportTo | None = typer.Option(
        None, "--export", help="Also export to this format, beside the native one: onnx "
        "writes OUT/onnx (model.onnx, manifest.json), checked against PyTorch."),
    quantize: QuantizeTo | None = typer.Option(
        None, "--quantize", help="int8: also OUT/onnx/model.int8.onnx (static for CNNs, "
        "dynamic for transformers), with its accuracy and latency."),
    ensemble: bool = typer.Option(
        False, "--ensemble", help="Refit every member of best.yaml's ensemble and the single "
        "pick instead: OUT/trial-N each, OUT/ensemble.json (weights) for predict."),
    soup: bool = typer.Option(
        False, "--soup", help="Export the greedy weight soup (Wortsman et al. 2022) of the "
        "study's trials that share the pick's backbone and method as one model: from the "
        "weights the search kept (best.yaml's soup section), else refit on train."),
) -> None:
    """Refit the best configuration, evaluate it on the test split, save the model.

    The data is read as the search read it (best.yaml's source: path, modality,
    columns, data store); an option given here overrides that."""
    from autotransfer.model.refit import train as run_train

    started = time.perf_counter()
    console.print(f"autotransfer train {best} on {refit_on} -> {out}"
                  + (" (the ensemble)" if ensemble else " (the soup)" if soup else ""))

    def on_epoch(result) -> None:
        val = "" if result.accuracy != result.accuracy else f"  val acc {result.accuracy:.4f}"
        console.print(f"  epoch {result.epoch}  loss {result.train_loss:.4f}{val}  "
                      f"{result.seconds:.1f}s  {result.samples_per_second:.0f} samples/s")

    if ensemble and soup:
        raise OptionError("soup", " and ensemble are two results; give one")
    if soup:
        _train_soup(best, out=out, data=data, refit_on=refit_on, epochs=epochs, device=device,
                    seed=seed, trust_remote_code=trust_remote_code, modality=modality,
                    text_column=text_column, label_column=label_column,
                    image_column=image_column, audio_column=audio_column, on_epoch=on_epoch,
                    trial=trial, export=(export,) if export else (), quantize=quantize)
        console.print(f"{time.perf_counter() - started:.0f}s -> {out}", highlight=False)
        return
    if ensemble:
        _train_ensemble(best, out=out, data=data, refit_on=refit_on, epochs=epochs,
                        device=device, seed=seed, trust_remote_code=trust_remote_code,
                        modality=modality, text_column=text_column, label_column=label_column,
                        image_column=image_column, audio_column=audio_column,
                        on_epoch=on_epoch, trial=trial, export=(export,) if export else (),
                        quantize=quantize)
        console.print(f"{time.perf_counter() - started:.0f}s -> {out}", highlight=False)
        return
    outcome = run_train(
        best, out=out, data=data, refit_on=refit_on, epochs=epochs, device=device, seed=seed,
        trust_remote_code=trust_remote_code, modality=modality, text_column=text_column,
        label_column=label_column, image_column=image_column, audio_column=audio_column,
        on_epoch=on_epoch, trial=trial, export=(export,) if export else (), quantize=quantize,
    )
    search_val = fmt(outcome.val_score)
    parts = [f"search val {outcome.metric} {search_val}"]
    if outcome.val is not None:
        parts.append(f"refit val {outcome.metric} {outcome.val[outcome.metric]:.4f}")
    if outcome.test is not None:
        parts.append(f"test accuracy {outcome.test['accuracy']:.4f}, "
                     f"macro F1 {outcome.test['macro_f1']:.4f}")
    else:
        parts.append("no test split")
    console.print(f"[bold green]{escape(outcome.backbone)}[/]: " + "; ".join(parts)
                  + f"; {time.perf_counter() - started:.0f}s -> {outcome.model_dir}",
                  highlight=False)
    onnx = _onnx_lines(outcome.model_dir)
    for line in onnx:
        console.print(line, highlight=False)
    if onnx and refit_on != "train":  # its val figures are on data the model trained on
        console.print("  (the refit trained on train+val, so the val accuracies above are not "
                      "held out; --refit-on train keeps the search's val split unseen)",
                      highlight=False)


def _train_ensemble(best: Path, **options) -> None:
    """``train --ensemble``: each member's refit, then the ensemble's test line."""
    from autotransfer.model.ensemble import train_ensemble

    def on_member(trial: int, position: int) -> None:
        console.print(f"trial {trial} ({position + 1} of the ensemble's refits)",
                      highlight=False)

    outcome = train_ensemble(best, on_member=on_member, **options)
    pick = outcome.members[outcome.pick]
    for trial, member in outcome.members.items():
        role = (f"weight {outcome.weights[trial]:.2f}" if trial in outcome.weights
                else "the single pick, not a member")
        test = ("no test split" if member.test is None
                else f"test {outcome.metric} {member.test[outcome.metric]:.4f}")
        console.print(f"  trial {trial} {escape(member.backbone)} ({role}): {test} -> "
                      f"{member.model_dir}", highlight=False)
    if outcome.test is not None and pick.test is not None:
        console.print(f"[bold green]ensemble of {len(outcome.weights)}[/]: test "
                      f"{outcome.metric} {outcome.test[outcome.metric]:.4f} (single pick, trial "
                      f"{outcome.pick}: {pick.test[outcome.metric]:.4f}); {outcome.trained} "
                      "models trained", highlight=False)


def _train_soup(best: Path, *, refit_on: str, **options) -> None:
    """``train --soup``: the ingredients refit, the soup's line, the trials left out."""
    from autotransfer.model.refit import read_best
    from autotransfer.model.soup import kept_members, train_soup

    if refit_on != "train" and (options.get("epochs") is not None
                                or kept_members(read_best(best)) is None):
        console.print("  the soup chooses its ingredients on the validation split: each "
                      "refits on train (the search's split)", highlight=False)
    outcome = train_soup(best, refit_on="train", **options)
    for number, why in sorted(outcome.left_out.items()):
        console.print(f"  trial {number} cannot be averaged: {escape(why)}", highlight=False)
    test = ("" if outcome.test is None
            else f", test {outcome.metric} {outcome.test[outcome.metric]:.4f}")
    how = ("the search's kept weights, nothing trained" if outcome.reused
           else f"of {len(outcome.tried)} refit")
    console.print(f"[bold green]soup of trials {'+'.join(map(str, outcome.kept))}[/] ({how}): "
                  f"val {outcome.metric} "
                  f"{outcome.val[outcome.metric]:.4f} (best ingredient alone "
                  f"{outcome.single_val:.4f}){test} -> {outcome.model_dir}", highlight=False)


def _onnx_lines(model_dir: Path) -> list[str]:
    """The ONNX export's checks, accuracy and latency, from its manifest (none without)."""
    from autotransfer.model.onnx_export import FOLDER, MANIFEST, summary_lines

    manifest = model_dir / FOLDER / MANIFEST
    return summary_lines(manifest) if manifest.is_file() else []


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory written by autotransfer train, "
                                     "its ONNX export (a .onnx file or the onnx folder), an "
                                     "ensemble folder (train --ensemble), or a best.yaml that "
                                     "lists one (exports:)."),
    inputs: list[str] = typer.Argument(None, help="Files, folders or CSV files."),
    text: list[str] = typer.Option(None, "--text", help="A text to classify (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="JSON with every class probability."),
    text_column: str = typer.Option("text", help="Text column of CSV/TSV/JSONL inputs."),
    batch_size: int = typer.Option(64, help="Inputs per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    runtime: Runtime = typer.Option(
        "auto", help="auto: ONNX Runtime for an ONNX export (a .onnx file or its folder), "
        "PyTorch for a model directory; onnxruntime: a model directory's onnx export."),
) -> None:
    """Predict the class of each input, with its probability."""
    import json

    from autotransfer.model.predict import predict as run_predict

    predictions = run_predict(model_dir, inputs or [], texts=text or [],
                              text_column=text_column, batch_size=batch_size, device=device,
                              runtime=runtime)
    if as_json:
        typer.echo(json.dumps([
            {"input": p.input, "label": p.label, "probabilities": p.probabilities}
            for p in predictions
        ], indent=2))
        return
    table = Table(show_edge=False)
    for column in ("input", "label", "probability", "runner-up"):
        table.add_column(column, justify="right" if column == "probability" else "left")
    for p in predictions:
        ranked = sorted(p.probabilities.items(), key=lambda kv: -kv[1])
        second = f"{ranked[1][0]} {ranked[1][1]:.3f}" if len(ranked) > 1 else ""
        table.add_row(escape(p.input), escape(p.label), f"{p.probability:.3f}", escape(second))
    console.print(table)


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model directory written by autotransfer train "
                                     "(or its ensemble folder, train --ensemble)."),
    data: Path = typer.Argument(
        ..., help="Labelled data as search reads it (class sub-folders, split folders, a CSV, "
        "TSV or JSONL file): its test split when it has one, else every example."),
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    batch_size: int = typer.Option(64, help="Inputs per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Score a trained model on labelled data: accuracy, macro-F1, per class, 95% intervals."""
    import json

    from autotransfer.data.options import DataOptions
    from autotransfer.study.results.evaluation import evaluate as run_evaluate

    found = run_evaluate(model_dir, data, batch_size=batch_size, device=device,
                         data_options=DataOptions.of(text_column=text_column,
                                                     label_column=label_column))
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
        return
    table = Table(show_edge=False)
    for column in ("class", "precision", "recall", "recall 95%", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, c in found.per_class.items():
        ci = c["recall_ci95"]
        table.add_row(escape(name), f"{c['precision']:.4f}", f"{c['recall']:.4f}",
                      "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}", f"{c['f1']:.4f}",
                      str(c["support"]))
    console.print(table)

    def ci(interval) -> str:
        return "" if not interval else f" (95% {interval[0]:.3f}-{interval[1]:.3f})"

    split = "its test split" if found.split == "test" else "every example"
    console.print(f"[bold]accuracy[/] {found.accuracy:.4f}{ci(found.accuracy_ci95)}, "
                  f"[bold]macro-F1[/] {found.macro_f1:.4f}{ci(found.macro_f1_ci95)} on "
                  f"{found.examples} examples of {escape(str(data))} ({split})",
                  highlight=False, soft_wrap=True)


@app.command()
def report(
    study: str = typer.Option(..., help="Study name."),
    storage: str = typer.Option(DEFAULT_STORAGE, help="SQLAlchemy URL of the study database, or journal:///path/study.log."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the report."),
) -> None:
    """Leaderboard, best per backbone, importances and plots (PNG + HTML) of a study."""
    from autotransfer.study.results.report import report_study

    path = report_study(study, storage=storage, out=out)
    console.print(f"report of study {study!r} -> {path}", highlight=False)


@app.command()
def ensemble(
    study: str = typer.Argument(..., help="Study name."),
    storage: str = typer.Option(DEFAULT_STORAGE, help="SQLAlchemy URL of the study database, "
                                "or journal:///path/study.log."),
    max_members: int | None = typer.Option(
        None, min=1, help="At most N distinct trials (default: the space's ensemble setting, "
        "else 5)."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for ensemble.yaml (and "
                             "soup.yaml); a best.yaml of this study there gets the sections "
                             "too."),
) -> None:
    """Build the ensemble of a stored study's trials again, from the predictions they kept,
    and its weight soup when its space has a soup key, from the weights they kept (no trial
    runs, nothing trains)."""
    from autotransfer.study.results.ensemble import ensemble_line
    from autotransfer.study.results.report import ensemble_study, soup_study
    from autotransfer.study.results.soup import soup_line

    started = time.perf_counter()
    section, written = ensemble_study(study, storage=storage, out=out, max_members=max_members)
    if section.get("members"):
        console.print(ensemble_table(section))
    console.print(escape(ensemble_line(section)), highlight=False, soft_wrap=True)
    console.print(f"{time.perf_counter() - started:.1f}s -> "
                  + ", ".join(str(p) for p in written), highlight=False)
    started = time.perf_counter()
    soup, written = soup_study(study, storage=storage, out=out)
    if soup is not None:
        console.print(escape(soup_line(soup)), highlight=False, soft_wrap=True)
        console.print(f"{time.perf_counter() - started:.1f}s -> "
                      + ", ".join(str(p) for p in dict.fromkeys(written)), highlight=False)


for _command in app.registered_commands:  # every command's --help reads at 80 columns
    _command.cls = Command
    if _command.callback in (prescreen, inspect, train, predict):  # search: every panel
        arrange(_command.callback, panels=("Data",))  # the data options, as search shows them
