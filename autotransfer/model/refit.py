"""``autotransfer train``: refit the best configuration of a search and export the model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autotransfer.data.options import DataOptions
from autotransfer.errors import AutotransferError, OptionError, SpaceError, first_line
from autotransfer.finetune.records import TrialRecord
from autotransfer.listing import few
from autotransfer.outputs import check_out_dir
from autotransfer.space.result import BestResult

REFIT_ON = ("train+val", "train")


@dataclass
class TrainOutcome:
    """What :func:`train` produced.

    Attributes:
        model_dir: the exported model directory.
        backbone: the backbone id.
        refit_on: ``train+val`` or ``train``.
        val_score: the search's validation score of this configuration (from ``best.yaml``).
        val: ``{metric: value}`` on the validation split (accuracy, macro_f1 and the search's
            metric; None when it was trained on).
        test: the same on the test split (None without a test split).
        epochs: the number of epochs trained.
        probabilities: ``{split: (probabilities (N, C) float32, labels (N,))}`` of the refit
            model on the splits it was scored on (``test``; ``val`` too when refit on
            ``train``): what an ensemble of refit members averages.
        model: the exported :class:`~autotransfer.finetune.trainer.TransferModel` (on the CPU,
            adapters merged) and ``preprocess`` its preprocessing: what a soup averages.
    """

    model_dir: Path
    backbone: str
    refit_on: str
    metric: str
    val_score: float | None
    val: dict[str, float] | None
    test: dict[str, float] | None
    epochs: int
    history: list[Any] = field(default_factory=list, repr=False)
    probabilities: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)
    model: Any = field(default=None, repr=False)
    preprocess: Any = field(default=None, repr=False)


def read_best(path: str | Path | dict[str, Any]) -> BestResult:
    """A ``best.yaml`` written by ``autotransfer search`` (any ``schema`` version), checked
    (:class:`~autotransfer.space.result.BestResult`); one-line errors.

    Raises:
        SpaceError: a missing or unreadable file, or a key of the wrong type.
    """
    if isinstance(path, BestResult):
        return path
    if isinstance(path, dict):
        best, where = path, "<best configuration>"
    else:
        where = str(path)
        try:
            best = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SpaceError(f"{path}: no such file; expected the best.yaml that "
                             "autotransfer search writes") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SpaceError(f"{path}: unreadable ({first_line(exc)})") from None
    if isinstance(best, dict) and "params" in best and not isinstance(best["params"], dict):
        raise SpaceError(f"{where}: params must be a mapping of hyperparameters")
    try:
        return BestResult.parse(best, where)
    except ValueError as exc:
        raise SpaceError(str(exc)) from None


def for_trial(config: BestResult, number: int) -> BestResult:
    """``best.yaml``'s mapping with trial ``number``'s backbone, hyperparameters and score in
    place of the picked trial's: from its ``pareto_front`` or its ``ensemble`` members when
    listed there, else from the study in ``source.storage`` (the trial must have completed).

    Raises:
        OptionError: ``trial`` is not a completed trial of the study, or the study cannot be read.
    """
    if number == config.source.trial:
        return config
    listed = [*(config.pareto_front or []),
              *(config.ensemble.members if config.ensemble is not None else [])]
    member = next((m for m in listed if m.trial == number), None)
    found = (member.model_dump(exclude={"trial"}) if member is not None
             else _stored_trial(config.source.model_dump(), number))
    first = (config.training or {}).get("lengths", [config.epochs])[0]
    plan = {}
    if found.get("epochs_trained"):  # what that trial trained, its continuations replayed
        lengths = [first, *found.get("continued_to", [])]
        plan = {"epochs": found["epochs_trained"],
                "training": {"epochs": found["epochs_trained"], "lengths": lengths,
                             "continuations": len(lengths) - 1}}
    return config.model_copy(update={
        **{k: v for k, v in found.items() if k in ("backbone", "params", "val_score")},
        "training": None, **plan,
        "source": config.source.model_copy(update={"trial": number})})


def _stored_trial(source: dict[str, Any], number: int) -> dict[str, Any]:
    """Trial ``number`` of the study named in ``source`` (its storage, study name)."""
    import optuna

    where = f"study {source.get('study')!r} in {source.get('storage')}"
    try:
        study = optuna.load_study(study_name=source["study"], storage=source["storage"])
        trials = study.get_trials(deepcopy=False)
    except Exception as exc:  # a masked password, a storage that moved
        raise OptionError("trial", f": cannot read {where} ({first_line(exc)})") from None
    found = next((t for t in trials if t.number == number), None)
    if found is None or found.state.name != "COMPLETE":
        done = [t.number for t in trials if t.state.name == "COMPLETE"]
        raise OptionError("trial", f" {number} is not a completed trial of {where}; completed: "
                                   f"{done[:20]}")
    record = TrialRecord.from_frozen(found)
    backbone: Any = record.backbone
    if not record.pretrained:
        backbone = {"id": backbone, "pretrained": False}
    return {"backbone": backbone, "params": dict(record.params or record.sampled),
            "val_score": float(record.value), "epochs_trained": record.epochs_trained,
            "continued_to": [int(c["epochs"]) for c in record.continuations
                             if c.get("rule") == "continuation"]}


def train(
    best: str | Path | dict[str, Any],
    *,
    out: str | Path,
    data: str | Path | None = None,
    refit_on: str = "train+val",
    epochs: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    trust_remote_code: bool = False,
    data_options: DataOptions | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    trial: int | None = None,
    export: str | tuple[str, ...] | list[str] = (),
    quantize: str | None = None,
    **given: Any,
) -> TrainOutcome:
    """Refit a search's best configuration, evaluate it on the test split, export the model.

    Args:
        best: a ``best.yaml`` path (or its parsed mapping) written by ``autotransfer search``.
        out: the model directory to write (timm or transformers native format plus
            ``autotransfer.json``; see :mod:`autotransfer.model.export`).
        data: the dataset; default: the one the search used (``source.data`` in ``best.yaml``).
        refit_on: ``train+val`` (default: the validation split joins the training data) or
            ``train`` (the search's exact split, so the validation score is reproduced).
        epochs: default: what the picked trial trained, replayed (``best.yaml``'s ``epochs``
            and ``training``: each planned length, the lr schedule of each, and the epoch the
            time budget stopped it at); given, a plain fit of that many epochs.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds the training; default: the best trial's own (the search's seed plus the
            trial number), so that ``refit_on="train"`` repeats the trial. The split always
            uses the search's seed (``source.seed``), as the search did.
        trust_remote_code: let a Hugging Face checkpoint run its own code.
        data_options: how to read the data (:class:`~autotransfer.data.options.DataOptions`:
            the modality, the columns of a table or a Hugging Face dataset, the data store);
            what it leaves open comes from what the search read (``source.data_options`` in
            ``best.yaml``), else it is detected from ``data``.
        on_epoch: called with each epoch's :class:`~autotransfer.finetune.trainer.EpochResult`.
        trial: refit this trial of the search instead of the picked one: a member of
            ``best.yaml``'s ``pareto_front``, or any completed trial of the study (read from
            ``source.storage``); see :func:`for_trial`.
        export: exports beside the native format: ``"onnx"`` writes ``out/onnx/``
            (``model.onnx``, ``manifest.json``), checked against PyTorch on the validation
            split (:mod:`autotransfer.model.onnx_export`).
        quantize: ``"int8"`` (with ``export="onnx"``): ``out/onnx/model.int8.onnx`` too, with
            its accuracy and latency beside the float model's in the manifest.
        **given: the data options as keywords, overriding ``data_options``: ``modality=``,
            ``text_column=``, ``label_column=``, ``image_column=``, ``audio_column=``
            (``ROLE_column`` for any column role), ``columns=``, ``data_store=``.

    Returns:
        A :class:`TrainOutcome` with the model directory and the test scores. The ensemble
        of ``best.yaml`` is refit by :func:`autotransfer.train_ensemble
        <autotransfer.model.ensemble.train_ensemble>` (``train --ensemble``).

    Raises:
        OptionError: ``refit_on``, ``epochs``, ``device``, ``export``, ``quantize`` (or onnx
            not installed) or a missing ``data`` (named by the parameter), or an ``out`` that
            cannot be written (a file, read-only, a full disk;
            :func:`autotransfer.outputs.check_out_dir`), before any training.
        SpaceError: ``best`` is missing or its hyperparameters are invalid.
        DataError: the data cannot be read.
        BackboneError: the backbone cannot be loaded or exported natively.

    Example:
        >>> import autotransfer
        >>> outcome = autotransfer.train("demo-out/best.yaml", out="model")  # doctest: +SKIP
        >>> outcome.test["accuracy"]  # doctest: +SKIP

    Long (as a reason): one linear story (read best.yaml, check, load the data and the
    backbone, train, score, export) that reads best top to bottom.
    """
    from autotransfer.contract.collect import get_registry
    from autotransfer.finetune.device import device_for
    from autotransfer.model.export import export_model
    from autotransfer.space.schema import BackboneSpec, parse_space

    config = read_best(best)
    if trial is not None:
        config = for_trial(config, trial)
    if refit_on not in REFIT_ON:
        raise OptionError("refit_on", f" must be one of {', '.join(REFIT_ON)}, got "
                                      f"{refit_on!r}")
    source = config.source
    data = data if data is not None else source.data
    if data is None:
        raise OptionError("data", ": best.yaml names no data (source.data); give the data")
    # the pick's own plan (a continued trial: each planned length), unless epochs is given
    lengths = ([int(n) for n in (config.training or {}).get("lengths") or []]
               if epochs is None else [])
    epochs = int(epochs if epochs is not None else config.epochs or 1)
    if epochs < 1:
        raise OptionError("epochs", f" must be >= 1, got {epochs}")
    spec_yaml = config.backbone
    spec = BackboneSpec.model_validate({"id": spec_yaml} if isinstance(spec_yaml, str)
                                       else spec_yaml)
    # the params go through the search-space validation, so a hand-edited value is checked;
    # the trial's training recipe, which its params record, is the space's recipe key again
    hyper = dict(config.params)
    recipe = {"recipe": hyper.pop("recipe")} if "recipe" in hyper else {}
    params = parse_space(
        {"backbones": [spec.id], "epochs": epochs, "params": hyper, **recipe},
        str(best) if not isinstance(best, dict) else "<best configuration>",
    ).resolve({})
    metric = config.metric
    extra = check_exports(export, quantize)
    torch_device = device_for(device)
    check_out_dir(out)  # a file or an unwritable folder fails before the training

    entry = get_registry().get(spec.id)
    split_seed = int(source.seed)
    if seed is None:
        seed = split_seed + int(source.trial or 0)
    dataset = refit_data(config, data, spec.id, data_options, **given)
    checked = dataset  # the ONNX check runs the search's validation split
    if refit_on == "train+val":
        dataset = _merge_val(dataset)

    import torch

    torch.manual_seed(seed)
    options = spec.load_options(entry, trust_remote_code=trust_remote_code)
    backbone = entry.load(pretrained=spec.pretrained, **options)
    average_epochs = (_averaged_epochs(source.model_dump()) if refit_on == "train+val"
                      and params.get("average_checkpoints") else None)
    trainer = _refit_trainer(backbone, dataset, params, torch_device, metric, seed,
                             evaluate_val=refit_on == "train", average_epochs=average_epochs)
    # the pick's plan replayed: its planned lengths (the lr cosine's), stopped where it stopped
    result = (trainer.fit(lengths[0], _replaying(trainer, lengths, epochs, on_epoch))
              if lengths else trainer.fit(epochs, on_epoch))
    val = None
    if refit_on == "train":
        val = dict(result.history[-1].scores)
        if result.averaging is not None:  # the averaged model's, as the trial scored it
            val = trainer.evaluate("val")
    metrics: dict[str, Any] = {
        "metric": metric,
        "search_val_score": config.val_score,
        "refit_on": refit_on,
        "epochs": epochs,
        "n_train": len(dataset.train),
    }
    if val is not None:
        metrics["val"] = val
    if result.continuations or result.epochs < result.lengths[-1]:  # the trial's plan, replayed
        metrics["lengths"] = result.lengths
    if result.averaging is not None:  # the soup of the search's trial, chosen or replayed
        metrics["averaging"] = result.averaging
    if result.test is not None:
        metrics["test"] = result.test
        metrics["n_test"] = len(dataset.test)
    model_dir = export_model(
        trainer.model, trainer.preprocess, out, classes=dataset.classes,
        modality=dataset.modality, backbone=spec.to_yaml(), params=params, metrics=metrics,
        extra=extra, data=checked, quantize=quantize,
    )
    return TrainOutcome(
        model_dir=model_dir, backbone=spec.id, refit_on=refit_on, metric=metric,
        val_score=config.val_score, val=val, test=result.test, epochs=epochs,
        history=result.history,
        probabilities={split: (probs.numpy(), trainer.predictions[split][1].numpy())
                       for split, probs in trainer.probabilities.items()
                       if split in ("val", "test")},
        model=trainer.model, preprocess=trainer.preprocess,
    )


def refit_data(config: BestResult, data: str | Path, backbone_id: str,
               data_options: DataOptions | None = None, **given: Any):
    """The data of a refit, split as the search split it (``source.seed`` and
    ``val_fraction``) and read as the search read it (``source.data_options``, under
    ``data_options`` and the keywords ``given``), checked: the backbone's modality and the
    search's classes.

    Raises:
        DataError: the data cannot be read, or is not the backbone's modality.
        AutotransferError: its classes differ from ``best.yaml``'s.
    """
    from autotransfer.data import check_data, load_data
    from autotransfer.data.checks import check_modality

    source = config.source
    asked = DataOptions.of(**given)
    asked = asked.over(data_options) if data_options is not None else asked
    read = asked.over(DataOptions.from_yaml(source.data_options, "best.yaml source"))
    dataset = load_data(data, val_fraction=float(source.val_fraction),
                        seed=int(source.seed), data_options=read)
    check_data(dataset)
    check_modality([backbone_id], dataset)
    classes = config.classes
    if classes and list(classes) != dataset.classes:
        raise AutotransferError(
            f"{dataset.source}: classes {few(dataset.classes, noun='classes')} differ from the "
            f"search's {few(classes, noun='classes')}"
        )
    return dataset


def check_exports(export: str | tuple[str, ...] | list[str] | None,
                  quantize: str | None) -> tuple[str, ...]:
    """The extra exports asked for, checked before any training.

    Raises:
        OptionError: an unknown export or quantisation, ``quantize`` without ``export="onnx"``,
            or onnx / onnxruntime not installed.
    """
    from autotransfer.model.export import EXTRA_EXPORTS
    from autotransfer.model.onnx_export import QUANTIZE

    extra = (export,) if isinstance(export, str) else tuple(export or ())
    for name in extra:
        if name not in EXTRA_EXPORTS:
            raise OptionError("export", f" must be one of {', '.join(EXTRA_EXPORTS)}, got "
                                        f"{name!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise OptionError("quantize", f" must be one of {', '.join(QUANTIZE)}, got "
                                      f"{quantize!r}")
    if quantize is not None and "onnx" not in extra:
        raise OptionError("quantize", f"={quantize} quantises the ONNX export; add export "
                                      "onnx")
    if "onnx" in extra:
        from autotransfer.finetune.onnx_graph import OnnxError, needs

        try:
            needs()
        except OnnxError as exc:
            raise OptionError("export", f" onnx {exc}") from None
    return extra


def _merge_val(dataset):
    """The dataset with its validation split joined to training (and no validation split)."""
    import numpy as np

    from autotransfer.data import LabelledData, Split

    train, val = dataset.train, dataset.val
    texts = None if train.texts is None else train.texts + (val.texts or [])
    merged = Split(train.paths + val.paths, np.concatenate([train.labels, val.labels]), texts)
    empty = Split([], np.zeros(0, dtype=np.int64), [] if texts is not None else None)
    return LabelledData(dataset.modality, dataset.classes, merged, empty, dataset.test,
                        dataset.source)


def _refit_trainer(backbone, dataset, params, device, metric, seed, *, evaluate_val: bool,
                   average_epochs: list[int] | None = None):
    """A Trainer; without a validation split, epochs report NaN instead of evaluating it, and
    checkpoint averaging replays ``average_epochs`` (the search trial's soup)."""
    from autotransfer.finetune.recipe import recipe_for
    from autotransfer.finetune.trainer import Trainer

    return Trainer(backbone, dataset, params, device=device, metric=metric, seed=seed,
                   evaluate_val=evaluate_val,
                   recipe=recipe_for(params, average_epochs=average_epochs))


def _replaying(trainer, lengths: list[int], epochs: int, on_epoch):
    """An ``on_epoch`` that re-plans ``trainer`` as the search's trial was: at the end of each
    planned length in ``lengths`` to the next one (its continuations, the schedule re-planned
    alike: ``Trainer.replan``), and to an end after ``epochs`` (a trial the time budget
    stopped before its planned length: the cosine of that length, cut where the trial was),
    then calls ``on_epoch``."""
    def step(result) -> None:
        later = [n for n in lengths if n > result.epoch]
        if result.epoch == trainer.epochs and later:
            trainer.replan(min(later))
        if result.epoch >= epochs:
            trainer.replan(result.epoch)
        if on_epoch is not None:
            on_epoch(result)

    return step


def _averaged_epochs(source: dict[str, Any]) -> list[int] | None:
    """The epochs that the search's trial averaged (``average_checkpoints``), read from its
    study; None, with a warning, when the study cannot be read (then the refit on train+val,
    which has no validation score to choose by, does not average)."""
    import warnings

    import optuna

    try:
        study = optuna.load_study(study_name=source["study"], storage=source["storage"])
        averaging = TrialRecord.from_frozen(study.trials[int(source["trial"])]).averaging
        if not averaging:
            raise LookupError("it recorded no averaging")
        return [int(e) for e in averaging["epochs"]]
    except Exception as exc:  # a masked password, a storage that moved, an older trial
        warnings.warn(f"cannot read which epochs trial {source.get('trial')} averaged "
                      f"({type(exc).__name__}: {first_line(exc)}); the refit on train+val does "
                      "not average checkpoints (refit_on='train' chooses them again)",
                      stacklevel=3)
        return None
