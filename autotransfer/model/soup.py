"""A weight soup across a search's trials: one plain model, ``train best.yaml --soup``.

Wortsman et al., 2022, "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time" (ICML, arXiv 2203.05482), the *greedy soup*: rank
the fine-tuned models by validation score, start from the best, and add each next one to the
uniform average of the soup only if the validation score of the average does not drop. It
needs models that share their architecture and their pre-trained start, so the ingredients are
the study's completed trials with the pick's backbone (the same id and weights) and tuning
method; adapters (LoRA, IA3) are merged into the weights before averaging, so every ingredient
is a plain model of the same shape. Every other trial is named with the reason it cannot be
averaged.

The trials kept only their predictions, not their weights, so each ingredient is refit
(:func:`autotransfer.model.refit.train` with ``trial=N``: its hyperparameters and seed) on the
search's training split, and the greedy choice is made on the search's validation split:
a soup refits on ``train`` (``refit_on="train"``), never on ``train+val``, whose validation
examples it would then choose on after training on them. Each ingredient is scored with its
own preprocessing for the ranking; the soup is scored and exported with the best
ingredient's (the first of the greedy order).

The export is one model folder in the zoo's own format (what ``train`` writes), with
``autotransfer.json``'s ``metrics.soup``: the ingredients tried and kept, each one's refit
validation score, the soup's, and the ones left out with why.

**Kept weights are reused.** When the search kept its trials' weights (space key ``soup``) and
``best.yaml`` has the ``soup`` section it built from them, the soup is made from those files
instead: its members (chosen by the search's greedy soup, on the search's split) are averaged,
scored on the validation and test splits and exported; nothing trains
(``SoupOutcome.reused``). A missing file, ``reuse=False`` or an ``epochs`` given refits as
above.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.errors import OptionError, first_line
from autotransfer.finetune.records import TrialRecord


@dataclass
class SoupOutcome:
    """What :func:`train_soup` produced.

    Attributes:
        model_dir: the exported soup (one model folder).
        kept: the trials averaged, in the greedy order (the best first).
        tried: every ingredient refit, best first by its refit validation score.
        left_out: trial number -> why it cannot be averaged with the pick.
        val: ``{metric: value}`` of the soup on the validation split.
        test: the same on the test split (None without one).
        single_val: the best ingredient's validation score (what the soup is compared with).
        reused: True when the soup was made from the weights the search kept (best.yaml's
            ``soup`` section): no ingredient was refit.
    """

    model_dir: Path
    metric: str
    kept: list[int]
    tried: list[int]
    left_out: dict[int, str]
    val: dict[str, float]
    test: dict[str, float] | None
    single_val: float
    ingredients: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    reused: bool = False  # made from the weights the search kept: nothing trained


def ingredients_of(config: Any) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The completed trials of ``best.yaml``'s study that can be averaged with its pick, best
    first by their search validation score, and ``{trial: why not}`` for the others.

    Returns:
        ``([{trial, backbone, params, val_score}], {trial: reason})``; the pick is first.

    Raises:
        OptionError: the study in ``source.storage`` cannot be read (named by ``soup``).
    """
    import optuna

    source = config.source
    where = f"study {source.study!r} in {source.storage}"
    try:
        study = optuna.load_study(study_name=source.study, storage=source.storage)
        trials = study.get_trials(deepcopy=False)
    except Exception as exc:  # a masked password, a storage that moved
        raise OptionError("soup", f": cannot read {where} ({first_line(exc)}); the soup "
                                  "chooses among the study's trials") from None
    pick_id = config.backbone_id
    pick_pretrained = (config.backbone.get("pretrained", True)
                       if isinstance(config.backbone, dict) else True)
    pick_method = config.params.get("method", "finetune")
    found: list[dict[str, Any]] = []
    left_out: dict[int, str] = {}
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        record = TrialRecord.from_frozen(t)
        params = dict(record.params or record.sampled)
        method = params.get("method", "finetune")
        pretrained = record.pretrained
        if record.backbone != pick_id or pretrained != pick_pretrained:
            left_out[t.number] = (f"backbone {record.backbone}"
                                  + ("" if pretrained else " (random weights)")
                                  + f", not the pick's {pick_id}: another architecture or "
                                    "start")
            continue
        if method != pick_method:
            left_out[t.number] = f"method {method}, not the pick's {pick_method}"
            continue
        backbone: Any = pick_id if pretrained else {"id": pick_id, "pretrained": False}
        found.append({"trial": t.number, "backbone": backbone, "params": params,
                      "val_score": float(record.value)})
    found.sort(key=lambda f: (f["trial"] != source.trial, -f["val_score"], f["trial"]))
    return found, left_out


def _scores(model, preprocess, dataset, split: str, metric: str, device, batch_size: int
            ) -> dict[str, float]:
    """``model``'s metrics on ``dataset``'s ``split``, inputs through ``preprocess``."""
    import numpy as np
    import torch

    from autotransfer.data import iterate_batches
    from autotransfer.space.objectives import classification_scores

    x, y = preprocess.encode(dataset, split)
    model = model.to(device).eval()
    preds = []
    with torch.inference_mode():
        for batch, _ in iterate_batches(x, y, batch_size, shuffle=False):
            preds.append(model(preprocess.to_input(batch, device=device)).argmax(-1).cpu())
    return classification_scores(np.asarray(y), torch.cat(preds).numpy(), metric)


def kept_members(config: Any) -> list[tuple[int, Path]] | None:
    """``[(trial, kept weights file)]`` of ``best.yaml``'s ``soup`` section, when it lists
    members whose files all exist; None otherwise (then the soup is refit)."""
    section = getattr(config, "soup", None)
    if section is None or not section.members:
        return None
    found = [(m.trial, Path(str((m.model_extra or {}).get("weights") or "")))
             for m in section.members]
    return found if all(path.is_file() for _, path in found) else None


def train_soup(best: Any, *, out: str | Path, max_ingredients: int = 5,
               refit_on: str = "train", device: str = "auto", reuse: bool = True,
               **options: Any) -> SoupOutcome:
    """Refit the trials that can be averaged with ``best.yaml``'s pick and export their greedy
    soup, or make it from the weights the search kept (see the module docstring).

    Args:
        best: a ``best.yaml`` path (or its parsed mapping) whose ``source`` names a readable
            study.
        out: the model folder to write (as :func:`autotransfer.model.refit.train`'s).
        max_ingredients: refit at most this many trials, the best first (the pick always).
        refit_on: ``train`` only (the greedy choice needs the validation split).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        reuse: average the weights the search kept when ``best.yaml``'s ``soup`` section lists
            them and every file exists (and ``epochs`` is not given); False: always refit.
        **options: :func:`~autotransfer.model.refit.train`'s (``data``, ``epochs``, the data
            options...), the same for every ingredient; ``trial`` and ``seed`` are each
            ingredient's own, ``export`` is not offered.

    Returns:
        A :class:`SoupOutcome`.

    Raises:
        OptionError: ``refit_on`` other than ``train``, ``max_ingredients`` < 1, ``trial``,
            ``seed`` or ``export`` given, or the study cannot be read.
        SpaceError, DataError, BackboneError: as :func:`~autotransfer.model.refit.train`.

    Example:
        >>> from autotransfer.model.soup import train_soup
        >>> outcome = train_soup("runs/s/best.yaml", out="soup")  # doctest: +SKIP
        >>> outcome.kept, outcome.left_out  # doctest: +SKIP
    """
    from autotransfer.finetune.averaging import load_average
    from autotransfer.finetune.device import device_for
    from autotransfer.model.export import export_model, read_meta
    from autotransfer.model.refit import read_best, refit_data, train
    from autotransfer.outputs import check_out_dir

    if refit_on != "train":
        raise OptionError("refit_on", f"={refit_on!r}: a soup chooses its ingredients on the "
                                      "validation split, so it refits on train")
    if max_ingredients < 1:
        raise OptionError("max_ingredients", f" must be >= 1, got {max_ingredients}")
    for name in ("trial", "seed", "export", "quantize"):
        if options.pop(name, None) not in (None, (), []):
            raise OptionError(name, " cannot be given with soup")
    config = read_best(best)
    kept = kept_members(config) if reuse and options.get("epochs") is None else None
    if kept is not None:
        options.pop("epochs", None)
        options.pop("on_epoch", None)  # nothing trains
        return _from_kept(config, kept, out=out, device=device, **options)
    ingredients, left_out = ingredients_of(config)
    for extra in ingredients[max_ingredients:]:
        left_out[extra["trial"]] = f"past max_ingredients={max_ingredients}"
    ingredients = ingredients[:max_ingredients]
    out = check_out_dir(out)
    torch_device = device_for(device)
    data = options.pop("data", None) or config.source.data
    given = {k: options.pop(k) for k in list(options) if k.endswith("_column")
             or k in ("modality", "columns", "data_store")}
    dataset = refit_data(config, data, config.backbone_id, options.get("data_options"),
                         **{k: v for k, v in given.items() if v is not None})
    batch_size = int(config.params.get("batch_size") or 64)
    loaded: dict[int, Any] = {}
    metas: dict[int, dict[str, Any]] = {}
    refit: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="autotransfer-soup-") as folder:
        for ingredient in ingredients:
            number = ingredient["trial"]
            outcome = train(best, out=Path(folder) / f"trial-{number}", trial=number,
                            refit_on="train", device=device, data=data, **given, **options)
            loaded[number] = outcome  # its model: adapters merged, a plain model
            metas[number] = read_meta(outcome.model_dir)
            refit[number] = {"search_val_score": ingredient["val_score"],
                             "val_score": outcome.val[outcome.metric] if outcome.val else None}
    metric = config.metric
    ranked = sorted(loaded, key=lambda n: (-(refit[n]["val_score"] or 0.0), n))
    first = loaded[ranked[0]]
    meta = metas[ranked[0]]
    states = {n: {k: v.detach().clone() for k, v in loaded[n].model.state_dict().items()}
              for n in ranked}
    soup_model, preprocess = first.model, first.preprocess
    soup = [ranked[0]]
    best_val = _scores(soup_model, preprocess, dataset, "val", metric, torch_device,
                       batch_size)[metric]
    single_val = best_val
    for number in ranked[1:]:
        load_average(soup_model, [states[n] for n in [*soup, number]])
        score = _scores(soup_model, preprocess, dataset, "val", metric, torch_device,
                        batch_size)[metric]
        refit[number]["with_soup"] = score
        if score >= best_val:
            soup, best_val = [*soup, number], score
    load_average(soup_model, [states[n] for n in soup])
    val = _scores(soup_model, preprocess, dataset, "val", metric, torch_device, batch_size)
    test = (_scores(soup_model, preprocess, dataset, "test", metric, torch_device, batch_size)
            if dataset.test is not None else None)
    record = {
        "method": "Wortsman et al. 2022 greedy soup across trials",
        "kept": soup, "tried": ranked, "ingredients": refit,
        "left_out": {str(k): v for k, v in sorted(left_out.items())},
        "single_val_score": single_val, "val_score": val[metric],
    }
    metrics: dict[str, Any] = {"metric": metric, "search_val_score": config.val_score,
                               "refit_on": "train", "val": val, "soup": record}
    if test is not None:
        metrics["test"] = test
    model_dir = export_model(soup_model, preprocess, out, classes=meta["classes"],
                             modality=meta["modality"], backbone=meta["backbone"],
                             params=meta["params"], metrics=metrics)
    return SoupOutcome(model_dir=model_dir, metric=metric, kept=soup, tried=ranked,
                       left_out=left_out, val=val, test=test, single_val=single_val,
                       ingredients=refit)


def _from_kept(config: Any, kept: list[tuple[int, Path]], *, out: str | Path, device: str,
               **options: Any) -> SoupOutcome:
    """The soup of ``best.yaml``'s ``soup`` members from their kept weights: the pick's model
    (its backbone, no adapters: they were merged when kept) with their uniform average loaded,
    scored on the search's validation and test splits and exported. Nothing trains."""
    import torch

    from autotransfer.contract.collect import get_registry
    from autotransfer.finetune.averaging import load_average
    from autotransfer.finetune.device import device_for
    from autotransfer.finetune.trainer import TransferModel
    from autotransfer.model.export import export_model
    from autotransfer.model.refit import refit_data
    from autotransfer.outputs import check_out_dir
    from autotransfer.space.schema import BackboneSpec

    out = check_out_dir(out)
    torch_device = device_for(device)
    data = options.pop("data", None) or config.source.data
    given = {k: v for k, v in options.items() if v is not None and (
        k.endswith("_column") or k in ("modality", "columns", "data_store"))}
    dataset = refit_data(config, data, config.backbone_id, options.get("data_options"), **given)
    spec = BackboneSpec.model_validate({"id": config.backbone} if isinstance(config.backbone, str)
                                       else config.backbone)
    entry = get_registry().get(spec.id)
    backbone = entry.load(pretrained=spec.pretrained, **spec.load_options(
        entry, trust_remote_code=bool(options.get("trust_remote_code"))))
    params = dict(config.params)
    preprocess = backbone.configured(params)
    model = TransferModel(backbone, dataset.n_classes, float(params.get("dropout") or 0.0))
    states = [torch.load(path, map_location="cpu", weights_only=True) for _, path in kept]
    metric = config.metric
    batch_size = int(params.get("batch_size") or 64)
    load_average(model, states[:1])  # the pick alone: what the soup is compared with
    single_val = _scores(model, preprocess, dataset, "val", metric, torch_device,
                         batch_size)[metric]
    load_average(model, states)
    val = _scores(model, preprocess, dataset, "val", metric, torch_device, batch_size)
    test = (_scores(model, preprocess, dataset, "test", metric, torch_device, batch_size)
            if dataset.test is not None else None)
    section = config.soup
    numbers = [n for n, _ in kept]
    left_out = {int(item["trial"]): str(item["why"])
                for item in (section.model_extra or {}).get("left_out") or []}
    record = {
        "method": "Wortsman et al. 2022 greedy soup across trials, from the weights the "
                  "search kept (chosen by its greedy soup; nothing refit)",
        "kept": numbers, "tried": [t["trial"] for t in (section.model_extra or {}).get("tried")
                                   or [{"trial": n} for n in numbers]],
        "left_out": {str(k): v for k, v in sorted(left_out.items())},
        "single_val_score": single_val, "val_score": val[metric], "reused": True,
        "weights": [str(path) for _, path in kept],
    }
    metrics: dict[str, Any] = {"metric": metric, "search_val_score": config.val_score,
                               "refit_on": "none (the search's kept weights)", "val": val,
                               "soup": record}
    if test is not None:
        metrics["test"] = test
    model_dir = export_model(model, preprocess, out, classes=dataset.classes,
                             modality=dataset.modality, backbone=spec.to_yaml(), params=params,
                             metrics=metrics)
    return SoupOutcome(model_dir=model_dir, metric=metric, kept=numbers, tried=record["tried"],
                       left_out=left_out, val=val, test=test, single_val=single_val,
                       reused=True)
