"""What a search ends with: the leaderboard and the re-runnable ``best.yaml``.

Also ``report.md`` and its plots (one module, so that every file a search writes reads the trial
records the same way; a little over 400 lines).
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from autotransfer.contract.collect import get_registry
from autotransfer.errors import (
    AutotransferError,
    BackboneError,
    PluginError,
    SpaceError,
    StorageError,
)
from autotransfer.finetune.records import (
    StudyRecord,
    TrialRecord,
    reference_name,
    reference_of,
    trial_records,
)
from autotransfer.space.hyperparameters import for_modality
from autotransfer.space.objectives import Objective, cost_names, get_objective, objectives
from autotransfer.space.result import SCHEMA, BestResult
from autotransfer.space.schema import SearchSpace, parse_space
from autotransfer.study.budget.timebudget import now
from autotransfer.study.references.trials import best_references, transfer_effect_of
from autotransfer.study.results.backbone_plot import backbone_matplotlib, backbone_plotly
from autotransfer.study.results.ensemble import build_ensemble, ensemble_row
from autotransfer.study.results.front_plots import front_plots
from autotransfer.study.results.intervals import (
    RULE,
    indistinguishable_lines,
    intervals_of,
    paired_gain,
    tie_note,
)
from autotransfer.study.results.scores import macro_f1, outcome_plots, per_class_scores
from autotransfer.study.results.soup import build_soup, soup_row, study_data
from autotransfer.study.selection import best_trial as selected
from autotransfer.study.selection import front_of, ordered, rule_of, score_target
from autotransfer.study.store.storage import make_storage, mask_url

#: The states a finished trial can end in, as the leaderboard orders them.
FINISHED = ("complete", "pruned", "fail")


def leaderboard(study) -> list[dict[str, Any]]:
    """One row per finished trial, best first: the feasible completed ones in the order of
    :func:`autotransfer.study.selection.ordered` (the pick first), the infeasible ones by
    value, then pruned, then failed."""
    records = trial_records(study, FINISHED)
    rule = rule_of(study)
    metric = None if rule.objectives[0] == "score" else rule.objectives[0]  # older: guessed
    rows = [
        {
            "trial": r.number,
            "state": r.state,
            "backbone": r.label,
            "method": r.params.get("method", "finetune"),
            "freeze_fraction": r.params.get("freeze_fraction"),
            "trainable_params": r.trainable_parameters,
            "lr": r.params.get("lr"),
            "val_score": r.score,
            "test_score": r.test_score,
            "epochs": r.epochs_reported,
            "seconds_per_epoch": r.seconds_per_epoch,
            "reason": r.reason,
            "reference": r.reference or "",  # linear_probe, default or empty
            **cost_columns(r),  # each registered cost (by its key), then feasible
            **intervals_of(r, metric),  # val_score_ci95, test_score_ci95 (.intervals)
        }
        for r in records
    ]
    order = {"complete": 0, "pruned": 1, "fail": 2}
    picked = {r.number: i for i, r in enumerate(ordered(records, rule))}
    # an infeasible completed trial (over a constraint) comes after every feasible one
    rows.sort(key=lambda r: (order[r["state"]], r["feasible"] is False,
                             picked.get(r["trial"], len(picked)), -(r["val_score"] or 0.0)))
    return rows


def cost_columns(r: TrialRecord) -> dict[str, Any]:
    """A leaderboard row's measured costs and ``feasible`` (True, False, or "" without
    constraints); an infeasible trial's reason names the bounds it exceeds."""
    over = {k: v for k, v in r.violations.items() if v > 0}
    return {**{o.key: r.costs.get(o.name) for o in objectives("cost")},
            "feasible": (not over) if r.violations else "",
            **({"reason": "infeasible: " + ", ".join(f"{k} +{v:g} over the bound"
                                                     for k, v in over.items())}
               if over and r.state == "complete" else {})}


def write_leaderboard_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)


def _own_params(params: dict[str, Any], backbone_id: str) -> dict[str, Any]:
    """``params`` without other modalities' hyperparameters (all of them when the backbone's
    zoo is not installed here)."""
    try:
        modality = get_registry().get(backbone_id).modality
    except (BackboneError, PluginError):  # a study of another machine's zoo still reports
        return params
    return for_modality(params, modality)


def best_config(study, space: SearchSpace, *, data: str, storage: str, space_file: str | None,
                exports: list[dict[str, Any]] | None = None,
                soup: dict[str, Any] | None = None):
    """The best completed trial as the ``best.yaml`` mapping (None when no trial completed),
    checked against :class:`autotransfer.space.result.BestResult` (``schema: 2``);
    ``exports``: the model folders made from it (``[{path, trial}]``); ``soup``: its ``soup``
    section (:func:`soup_config`, built where the data is loaded), None: none."""
    best = best_trial(study)
    if best is None:
        return None
    spec = space.backbone(best.sampled["backbone"])
    config: dict[str, Any] = {
        "schema": SCHEMA,
        "backbone": spec.to_yaml(),
        "params": _own_params(best.params or space.resolve(best.sampled), spec.id),
        "epochs": best.epochs_trained or space.epochs,  # what the pick trained: train repeats it
        "metric": space.metric,
        "val_score": float(best.value),
    }
    if best.test_score is not None:
        config["test_score"] = float(best.test_score)
    config.update({k: v for k, v in intervals_of(best, space.metric).items() if v is not None})
    config["classes"] = best.classes
    config.update(best_costs(best))
    config["scores"] = {split: dict(found) for split, found in
                        (("val", best.scores), ("test", best.test_scores)) if found}
    training = training_of(best, space)
    if training is not None:
        config["training"] = training
    config.update(outcome(study, best, space.metric))
    config.update(front_config(study, space))
    if space.ensemble is not None:  # predictions only: no trial is re-run
        config["ensemble"] = ensemble_config(study, space)
    if soup is not None:
        config["soup"] = soup
    config["source"] = {
        "study": study.study_name,
        "trial": best.number,
        "seed": best.seed,
        "data": data,
        "space": space_file,
        "val_fraction": space.val_fraction,  # train --refit-on train re-creates the same split
        "storage": storage,  # already masked by the caller
        # modality, columns and data store as the search resolved them (data.options)
        "data_options": StudyRecord.of(study).data_options,
    }
    if exports:
        config["exports"] = exports
    return BestResult.parse(config, "best.yaml").to_mapping()


def ensemble_config(study, space: SearchSpace, max_members: int | None = None
                    ) -> dict[str, Any]:
    """best.yaml's ``ensemble`` section (:mod:`autotransfer.study.results.ensemble`); one that
    cannot be built says why in its ``note`` rather than failing the results."""
    size = max_members or (space.ensemble.max_members if space.ensemble else 5)
    try:
        section = build_ensemble(study, metric=space.metric, max_members=size, space=space)
    except ValueError as exc:
        return {"kind": "ensemble", "members": [], "note": f"not built: {exc}"}
    for member in section["members"]:  # the member's modality's hyperparameters, as above
        name = member["backbone"]
        member["params"] = _own_params(member["params"],
                                       name if isinstance(name, str) else name["id"])
    return section


def soup_config(study, space: SearchSpace, *, data, device: Any = "auto",
                trust_remote_code: bool = False) -> dict[str, Any]:
    """best.yaml's ``soup`` section (:mod:`autotransfer.study.results.soup`) of ``study``
    scored on ``data``, the search's data; one that cannot be built says why in its ``note``
    rather than failing the results."""
    size = space.soup.max_ingredients if space.soup is not None else 5
    try:
        section = build_soup(study, metric=space.metric, data=data, device=device, space=space,
                             max_ingredients=size, trust_remote_code=trust_remote_code)
    except (AutotransferError, ValueError, KeyError, OSError, RuntimeError) as exc:
        return {"kind": "soup", "members": [], "note": f"not built: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}", "left_out": []}
    for member in section["members"]:  # the member's modality's hyperparameters
        name = member["backbone"]
        member["params"] = _own_params(member["params"],
                                       name if isinstance(name, str) else name["id"])
    return section


def with_ensemble(rows: list[dict[str, Any]], best: dict[str, Any] | None
                  ) -> list[dict[str, Any]]:
    """The leaderboard rows to show: ``rows`` with best.yaml's ensemble and soup (those
    built) as rows after the first (``leaderboard.csv`` keeps one row per trial)."""
    extra = [row for row in (ensemble_row((best or {}).get("ensemble") or {}),
                             soup_row((best or {}).get("soup") or {})) if row is not None]
    return [*rows[:1], *extra, *rows[1:]] if extra else rows


def training_of(best: TrialRecord, space: SearchSpace) -> dict[str, Any] | None:
    """best.yaml's ``training``: how long the pick trained and what its recipe bought, when
    there is something to say (a continuation, a stop by the time budget before the planned
    length, or checkpoint averaging): ``epochs`` trained, ``lengths`` (each planned length,
    the space's ``epochs`` first: ``train`` plans its lr schedule by them and stops after
    ``epochs``), ``continuations``, ``ended`` (why it stopped early) and ``averaging`` (the
    trial's record: the epochs averaged and the ``gain`` over its last epoch,
    :mod:`autotransfer.finetune.averaging`). None otherwise."""
    averaging = best.averaging
    if not best.continuations and averaging is None:
        return None
    lengths = [space.epochs, *(int(c["epochs"]) for c in best.continuations
                               if c.get("rule") == "continuation")]
    training: dict[str, Any] = {"epochs": best.epochs_trained or space.epochs,
                                "lengths": lengths, "continuations": best.continued}
    if best.ended:
        training["ended"] = best.ended
    if averaging is not None:
        training["averaging"] = averaging
    return training


def training_summary(best: dict[str, Any]) -> str:
    """One sentence on how long the pick of ``best.yaml``'s mapping trained, how many
    continuations it got and what checkpoint averaging bought (its ``epochs`` and
    ``training``), for the console and the report."""
    training = best.get("training") or {}
    epochs = int(best["epochs"])
    lengths = training.get("lengths") or [epochs]
    line = f"the pick trained {epochs} epoch{'s' * (epochs != 1)}"
    n = int(training.get("continuations") or 0)
    if n:
        line += (f", continued {n} time{'s' * (n != 1)} (planned "
                 f"{' -> '.join(str(x) for x in lengths)})")
    else:
        line += ", not continued"
    if training.get("ended"):  # the time budget stopped it before its planned length
        line += f"; {training['ended']}"
    averaging = training.get("averaging")
    if averaging and "gain" in averaging:
        line += (f"; checkpoint averaging of epochs {averaging['epochs']}: "
                 f"{averaging['gain']:+.4f} val over its last epoch")
    return line


def best_costs(best: TrialRecord) -> dict[str, Any]:
    """best.yaml's measured costs of the picked trial (those recorded)."""
    return {get_objective(name).key: value for name, value in best.costs.items()
            if name in cost_names()}


def front_config(study, space: SearchSpace) -> dict[str, Any]:
    """best.yaml's ``objectives``, ``pick`` and ``pareto_front`` in multi-objective mode (the
    front ranked by the pick rule, :mod:`autotransfer.study.selection`), else nothing."""
    rule = rule_of(study)
    if not rule.multi_objective:
        return {"constraints": dict(rule.constraints)} if rule.constraints else {}
    front = []
    for r in front_of(study):
        spec = space.backbone(r.sampled["backbone"])
        front.append({"trial": r.number, "backbone": spec.to_yaml(),
                      "params": _own_params(r.params or space.resolve(r.sampled), spec.id),
                      "val_score": float(r.value),
                      **{o.key: r.costs.get(o.name) for o in _front_costs(rule)}})
    extra = {"constraints": dict(rule.constraints)} if rule.constraints else {}
    return {"objectives": list(rule.objectives), "pick": rule.pick or rule.objectives[0],
            **extra, "pareto_front": front}


def _front_costs(rule) -> list[Objective]:
    """The costs a front member lists: 0.1's three, then the rule's other cost objectives."""
    shown = ["latency_ms", "params", "size_mb", *rule.objectives[1:]]
    return [get_objective(n) for n in dict.fromkeys(shown) if n in cost_names()]


def outcome(study, best: TrialRecord, metric: str | None = None) -> dict[str, Any]:
    """best.yaml's ``macro_f1`` and ``per_class`` (val), ``test_macro_f1`` and
    ``test_per_class``, ``references``, ``search_gain`` (:func:`search_gain`, with
    ``metric``) and ``transfer_effect`` (each when known)."""
    found: dict[str, Any] = {}
    for split, prefix in (("val", ""), ("test", "test_")):
        if best.confusion.get(split):
            per_class = per_class_scores(best.confusion[split], best.classes or [])
            found[f"{prefix}macro_f1"] = macro_f1(per_class)
            found[f"{prefix}per_class"] = per_class
    if "macro_f1" not in found and best.scores.get("macro_f1") is not None:
        found["macro_f1"] = best.scores["macro_f1"]  # recorded before per-class scores
    found["references"] = best_references(study)
    gain = search_gain(study, best, found["references"], metric)
    if gain is not None:
        found["search_gain"] = gain
    effect = transfer_effect_of(study)
    if effect is not None:
        found["transfer_effect"] = {k: effect[k] for k in
                                    ("val", "test", "scratch_val_score", "scratch_test_score")}
    return found


def search_gain(study, best: TrialRecord, references: dict[str, Any],
                metric: str | None) -> dict[str, Any] | None:
    """What the search bought over its best reference (by validation score), on the examples
    both scored: ``{reference, trial, val, val_ci95, test, test_ci95}``, each gain with the
    95% interval of a paired bootstrap (:func:`autotransfer.study.results.intervals.
    paired_gain`). The val gain is optimistic (the search chose the pick on it); the test
    gain is not. None without references, when the pick is the best reference, or when
    either trial kept no predictions (a study recorded before they were kept)."""
    if not references or metric in (None, "score"):
        return None
    kind, top = max(references.items(), key=lambda item: item[1]["val_score"])
    if top["trial"] == best.number:
        return None
    other = TrialRecord.from_frozen(study.get_trials(deepcopy=False)[top["trial"]])
    try:
        mine, theirs = best.probabilities(), other.probabilities()
    except ValueError:
        return None
    found: dict[str, Any] = {"reference": kind, "trial": top["trial"]}
    for split in ("val", "test"):
        if split in mine and split in theirs:
            gain = paired_gain(mine[split][0], theirs[split][0], mine[split][1], metric)
            found[split], found[f"{split}_ci95"] = gain["gain"], gain["ci95"]
    return found if "val" in found else None


def best_trial(study) -> TrialRecord | None:
    """The record of the study's best completed trial (None when none completed within the
    space's constraints); :mod:`autotransfer.study.selection` decides."""
    return selected(study)


def backbone_id(config: dict[str, Any]) -> str:
    """The backbone id of a ``best.yaml`` mapping (its ``backbone`` is an id or a mapping)."""
    backbone = config["backbone"]
    return backbone if isinstance(backbone, str) else backbone["id"]


def state_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many leaderboard rows are complete, pruned and failed."""
    return {s: sum(r["state"] == s for r in rows) for s in FINISHED}


def write_best(config: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Best transfer configuration found by `autotransfer search`.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def best_per_backbone(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each backbone's best leaderboard row (completed before pruned before failed)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["backbone"] not in best:
            best[row["backbone"]] = row
    return list(best.values())


#: Hyperparameter importances from this many completed trials the search sampled (references
#: and warm starts are fixed configurations: they say nothing about what a parameter does).
IMPORTANCE_TRIALS = 5


def importances(study) -> tuple[dict[str, float], str | None]:
    """Hyperparameter importances (PED-ANOVA, no extra dependency), or ``({}, why not)``.

    Computed only where they mean something: from :data:`IMPORTANCE_TRIALS` completed trials
    that are not references on, and when at least two hyperparameters took more than one
    value among the completed trials (with one, its importance is 1 by construction; with
    none varied, every share is noise)."""
    import optuna
    from optuna.trial import TrialState

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sampled = [t for t in completed if not reference_of(t)]
    if len(sampled) < IMPORTANCE_TRIALS:
        return {}, (f"{len(sampled)} completed trial(s) besides the references; importances "
                    f"need at least {IMPORTANCE_TRIALS}")
    varied = sorted({name for t in completed for name in t.params
                     if len({repr(u.params.get(name)) for u in completed}) > 1})
    if len(varied) < 2:
        which = f"only {varied[0]} varied" if varied else "no hyperparameter varied"
        return {}, (f"{which} among the completed trials; importances compare two or more "
                    "varied hyperparameters")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                target=score_target(study),
            )
    except (RuntimeError, ValueError) as exc:
        return {}, str(exc).splitlines()[0]
    if not found or not any(v > 0 for v in found.values()):
        return {}, "no hyperparameter varied enough among the completed trials"
    return dict(found), None


def _plots(study, params_importance: dict[str, float], rows, metric: str, best=None):
    """name -> (plotly figure builder, matplotlib figure builder)."""
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    target = {"target": score_target(study), "target_name": metric} if score_target(
        study) else {}  # a multi-objective study: its score's history and importances
    plots: dict[str, tuple[Any, Any]] = {
        "optimization_history": (lambda: vis.plot_optimization_history(study, **target),
                                 lambda: vis_mpl.plot_optimization_history(study, **target)),
    }
    if rows:
        plots["score_per_backbone"] = (lambda: backbone_plotly(rows, metric),
                                       lambda: backbone_matplotlib(rows, metric))
    if params_importance:
        from optuna.importance import PedAnovaImportanceEvaluator

        plots["param_importances"] = (
            lambda: vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                               **target),
            lambda: vis_mpl.plot_param_importances(study,
                                                   evaluator=PedAnovaImportanceEvaluator(),
                                                   **target),
        )
    plots.update(front_plots(study, metric, (best or {}).get("references", {}),
                             (best or {}).get("ensemble"), (best or {}).get("soup")))
    trial = None if best is None else TrialRecord.from_frozen(
        study.get_trials(deepcopy=False)[best["source"]["trial"]])
    plots.update(outcome_plots(study, metric, (best or {}).get("references", {}), trial))
    return plots


def write_report(study, out: str | Path, *, metric: str = "score",
                 best: dict[str, Any] | None = None, until: float | None = None,
                 rows: list[dict[str, Any]] | None = None) -> Path:
    """Leaderboard, best per backbone, importances, plots (HTML and PNG) and ``report.md``.

    Plots use optuna.visualization (plotly, HTML) and optuna.visualization.matplotlib (PNG), so
    no browser is needed. A plot that cannot be drawn is named in the report, never fatal.
    ``until`` (wall-clock seconds, a time budget's end) skips the plots that would end after
    it, as long as the last one drawn took (the report names them). ``rows``: the leaderboard
    that the caller has already written to ``leaderboard.csv`` (the search does, before
    ``best.yaml``); None: it is computed and written here. Returns the path of ``report.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = leaderboard(study)
        write_leaderboard_csv(rows, out / "leaderboard.csv")
    per_backbone = best_per_backbone(rows)
    write_leaderboard_csv(per_backbone, out / "best_per_backbone.csv")
    found, why_not = importances(study)
    drawn, failed = [], []
    last = 0.0  # seconds the last plot took
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's experimental-API warnings
        for name, (html, png) in _plots(study, found, rows, metric, best).items():
            started = now()
            if until is not None and started + last > until:
                failed.append(f"{name}: not drawn, the time budget was spent")
                continue
            try:
                _draw(html, png, out, name)
                drawn.append(name)
            except Exception as exc:  # an empty or degenerate study: say so, keep the rest
                failed.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            last = now() - started
    path = out / "report.md"
    path.write_text(_markdown(study, rows, per_backbone, found, why_not, drawn, failed, metric,
                              best), encoding="utf-8")
    return path


def _draw(html, png, out: Path, name: str) -> None:
    """One plot as ``name.html`` (plotly) and ``name.png`` (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    html().write_html(out / f"{name}.html", include_plotlyjs="directory")
    axes = png()
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    figure.savefig(out / f"{name}.png", dpi=100)
    plt.close(figure)


def fmt(value: Any, spec: str = ".4f") -> str:
    """``value`` formatted with ``spec``, or ``-`` when it is None (a table cell)."""
    return "-" if value is None else format(value, spec)


def _markdown(study, rows, per_backbone, found, why_not, drawn, failed, metric, best) -> str:
    counts = state_counts(rows)
    lines = [f"# autotransfer report: study `{study.study_name}`", ""]
    lines.append(f"{len(rows)} trials: {counts['complete']} complete, {counts['pruned']} "
                 f"pruned, {counts['fail']} failed. Scores are validation {metric}.")
    lines.append("")
    if best is not None:
        lines += _summary_table(best)
        lines += _indistinguishable(study, best, metric)
        backbone = backbone_id(best)
        test = (f", test {best['test_score']:.4f}{_ci(best.get('test_score_ci95'))}"
                if best.get("test_score") is not None else "")
        lines += ["## Best configuration", "",
                  f"`{backbone}`: val {best['val_score']:.4f}{_ci(best.get('val_score_ci95'))}"
                  f"{test} (`best.yaml`; refit it with `autotransfer train best.yaml --out "
                  "model`)", "", *_honesty(best), "",
                  *([f"{training_summary(best).capitalize()}.", ""] if best.get("epochs") else []),
                  "```yaml", yaml.safe_dump(best["params"], sort_keys=False).rstrip(), "```", ""]
        if best.get("per_class"):
            lines += ["## Per-class scores of the best (validation)", "",
                      "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
            lines += [f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | "
                      f"{c['support']} |" for name, c in best["per_class"].items()]
            lines.append("")
    lines += ["## Best per backbone", "",
              "| backbone | trial | state | val | test | epochs | method | freeze | trainable | "
              "lr |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in per_backbone:
        lines.append(f"| `{r['backbone']}` | {r['trial']} | {r['state']} | "
                     f"{fmt(r['val_score'])} | {fmt(r['test_score'])} | {r['epochs']} | "
                     f"{r['method']} | {fmt(r['freeze_fraction'], '.2f')} | "
                     f"{fmt(r['trainable_params'], ',')} | {fmt(r['lr'], '.1e')} |")
    costs = objectives("cost")
    lines += ["", "## Leaderboard", "", "| trial | state | backbone | method | trainable | val | "
              "val 95% | test | test 95% | epochs | "
              + "".join(f"{o.label} | " for o in costs) + "why |",
              "|---|---|---|---|---|---|---|---|---|---|" + "---|" * (len(costs) + 1)]
    for r in with_ensemble(rows, best):
        reason = (r["reason"] or r["reference"].replace("_", " ")).replace("|", "/")
        lines.append(f"| {r['trial']} | {r['state']} | `{r['backbone']}` | {r['method']} | "
                     f"{fmt(r['trainable_params'], ',')} | "
                     f"{fmt(r['val_score'])} | {_ci(r.get('val_score_ci95'), bare=True)} | "
                     f"{fmt(r['test_score'])} | {_ci(r.get('test_score_ci95'), bare=True)} | "
                     f"{r['epochs']} | "
                     + "".join(f"{fmt(r.get(o.key), o.fmt)} | " for o in costs)
                     + f"{reason} |")
    note = tie_note(rows)
    lines += ["", f"Note: {note}."] if note else []
    lines += _front_lines(best)
    lines += ["", "## Hyperparameter importances", ""]
    if found:
        lines += ["| hyperparameter | importance (PED-ANOVA) |", "|---|---|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in found.items()]
    else:
        lines.append(f"Not computed: {why_not}.")
    lines += ["", "## Plots", ""]
    for name in drawn:
        title = name.replace("_", " ").capitalize()
        lines.append(f"- {title}: [{name}.html]({name}.html)  ")
        lines.append(f"  ![{title}]({name}.png)")
    for problem in failed:
        lines.append(f"- not drawn: {problem}")
    return "\n".join(lines) + "\n"


def _indistinguishable(study, best: dict[str, Any], metric: str) -> list[str]:
    """report.md's lines for the references the best cannot be told apart from."""
    trials = study.get_trials(deepcopy=False)

    def record_of(number: int) -> TrialRecord:
        return TrialRecord.from_frozen(trials[number])

    found = indistinguishable_lines(record_of(best["source"]["trial"]),
                                    best.get("references") or {}, record_of,
                                    None if metric == "score" else metric)
    return [*found, ""] if found else []


def _front_lines(best: dict[str, Any] | None) -> list[str]:
    """The Pareto front of a multi-objective search, as best.yaml lists it."""
    front = (best or {}).get("pareto_front")
    if not front:
        return []
    costs = [o for o in objectives("cost") if o.key in front[0]]  # those best.yaml lists
    lines = ["", f"## Pareto front ({', '.join(best['objectives'])}; picked by "
             f"{best['pick']}: trial {best['source']['trial']})", "",
             "| trial | backbone | val | " + "".join(f"{o.label} | " for o in costs),
             "|---|---|---|" + "---|" * len(costs)]
    for m in front:
        name = m["backbone"] if isinstance(m["backbone"], str) else m["backbone"]["id"]
        lines.append(f"| {m['trial']} | `{name}` | {fmt(m['val_score'])} | "
                     + "".join(f"{fmt(m.get(o.key), o.fmt)} | " for o in costs))
    said = []
    for kind, costs_are in (("ensemble", "its members' costs combined"),
                            ("soup", "one model's costs, the pick's")):
        section = (best or {}).get(kind) or {}
        point = section.get("pareto")
        if section.get("members") and point:
            trials = "+".join(str(m["trial"]) for m in section["members"])
            where = ("on the front" if point["on_front"] else "dominated by trial(s) "
                     + ", ".join(str(n) for n in point["dominated_by"]))
            lines.append(f"| {kind} | trials {trials} | {fmt(section['val_score'])} (held-out) | "
                         + "".join(f"{fmt(section.get(o.key), o.fmt)} | " for o in costs))
            said.append(f"The {kind} of trials is {where} (its held-out validation score "
                        f"against {costs_are}).")
    return [*lines, *(["", " ".join(said)] if said else [])]


def _ci(interval, *, bare: bool = False) -> str:
    """`` [low, high]`` of a 95% interval (``-`` or nothing when unknown)."""
    if not interval:
        return "-" if bare else ""
    text = f"[{interval[0]:.4f}, {interval[1]:.4f}]"
    return text if bare else f" (95% interval {text})"


def _honesty(best: dict[str, Any]) -> list[str]:
    """What the best validation score is worth (:mod:`autotransfer.study.results.intervals`)."""
    test = ("; its test score, which no choice of the search saw, is the honest estimate"
            if best.get("test_score") is not None else
            "; give a test split for an estimate that no choice of the search saw")
    return [f"The best validation score of many trials is optimistic (the winner's curse: the "
            f"pick favours a trial the validation split happened to suit){test}. The pick: "
            f"{RULE}."]


def _summary_table(best: dict[str, Any]) -> list[str]:
    """What the search bought: the best, the best reference of each kind, from scratch."""
    def row(what, backbone, val, test, trial) -> str:
        return f"| {what} | `{backbone}` | {fmt(val)} | {fmt(test)} | {fmt(trial, 'd')} |"

    name = backbone_id(best)
    trial = best["source"]["trial"]
    lines = ["| | backbone | val | test | trial |", "|---|---|---|---|---|",
             row("best", name, best["val_score"], best.get("test_score"), trial)]
    refs = best.get("references", {})
    for kind, ref in refs.items():
        lines.append(row(f"best {reference_name(kind)}", ref["backbone"], ref["val_score"],
                         ref["test_score"], ref["trial"]))
    effect = best.get("transfer_effect")
    if effect:
        lines.append(row("from scratch (random weights)", name, effect["scratch_val_score"],
                         effect["scratch_test_score"], trial))
    notes = []
    if refs:
        top = max(refs.values(), key=lambda r: r["val_score"])
        gain = best["val_score"] - top["val_score"]
        test_gain = (None if top["test_score"] is None or best.get("test_score") is None
                     else best["test_score"] - top["test_score"])
        paired = best.get("search_gain") or {}
        val_ci, test_ci = (_ci(paired.get(f"{s}_ci95"), bare=True) for s in ("val", "test"))
        notes.append(f"Gain of the search over the best reference: val {gain:+.4f}"
                     + (f" (paired 95% interval {val_ci})" if paired.get("val_ci95") else "")
                     + (f", test {test_gain:+.4f}" if test_gain is not None else "")
                     + (f" (paired 95% interval {test_ci})" if paired.get("test_ci95") else "")
                     + ".")
    if effect:
        notes.append(f"Transfer effect (pretrained minus scratch): val {effect['val']:+.4f}"
                     + (f", test {effect['test']:+.4f}" if effect["test"] is not None else "")
                     + ".")
    if best.get("macro_f1") is not None:
        notes.append(f"Macro-F1 of the best (val): {best['macro_f1']:.4f}.")
    return lines + [""] + ([" ".join(notes), ""] if notes else [])


def stored_study(study_name: str, *, storage: str):
    """The study ``study_name`` in ``storage`` and the space it was created with (None when
    the study recorded none, or one this version cannot read).

    Raises:
        StorageError: the storage cannot be opened, or holds no such study (the message lists
            the studies it holds).
    """
    import optuna

    study_storage = make_storage(storage, must_exist=True)
    names = [s.study_name for s in optuna.get_all_study_summaries(study_storage)]
    if study_name not in names:
        shown = ", ".join(sorted(names)[:10]) or "none"
        raise StorageError(f"no study {study_name!r} in {mask_url(storage)}; studies there: "
                           f"{shown}")
    study = optuna.load_study(study_name=study_name, storage=study_storage)
    origin = StudyRecord.of(study)
    space = None
    if origin.space is not None:
        try:
            space = parse_space(json.loads(origin.space), f"study {study_name!r}")
        except (SpaceError, ValueError):
            space = None
    return study, space


def report_study(study_name: str, *, storage: str, out: str | Path) -> Path:
    """:func:`write_report` for a study in ``storage`` (also ``best.yaml`` when one completed).

    Example:
        >>> from autotransfer.study.results.report import report_study
        >>> report_study("fashion-mnist-image-quick", storage="sqlite:///demo.db",
        ...              out="demo-report")  # doctest: +SKIP
    """
    study, space = stored_study(study_name, storage=storage)
    best = None
    if space is not None:
        best = best_config(study, space, data=StudyRecord.of(study).data or "",
                           storage=mask_url(storage), space_file=None)
    out = Path(out)
    if best is not None:
        write_best(best, out / "best.yaml")
    metric = best["metric"] if best else "score"
    return write_report(study, out, metric=metric, best=best)


def ensemble_study(study_name: str, *, storage: str, out: str | Path = ".",
                   max_members: int | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Build the ensemble of a stored study's trials again, from the predictions its trials
    kept (no trial runs): ``out/ensemble.yaml``, and the ``ensemble`` section of
    ``out/best.yaml`` when that file is this study's. Returns the section and the files
    written.

    Args:
        max_members: at most this many distinct trials (None: the space's ``ensemble``
            setting, else 5).

    Raises:
        StorageError: no such study (see :func:`stored_study`).
        AutotransferError: the study recorded no space this version can read.

    Example:
        >>> from autotransfer.study.results.report import ensemble_study
        >>> section, files = ensemble_study("fashion-mnist-image-quick",
        ...                                 storage="sqlite:///demo.db")  # doctest: +SKIP
    """
    study, space = stored_study(study_name, storage=storage)
    if space is None:
        raise AutotransferError(f"study {study_name!r} recorded no search space this version "
                                "can read; the ensemble needs its metric")
    section = ensemble_config(study, space, max_members)
    return section, _write_section(Path(out), "ensemble", section, study_name, storage,
                                   "The ensemble of a study's trials")


def _write_section(out: Path, key: str, section: dict[str, Any], study_name: str, storage: str,
                   what: str) -> list[Path]:
    """``out/KEY.yaml`` with ``section``, and ``section`` as ``out/best.yaml``'s ``key`` when
    that file is this study's; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{key}.yaml"]
    written[0].write_text(
        f"# {what}, built by `autotransfer ensemble`.\n"
        + yaml.safe_dump({"study": study_name, "storage": mask_url(storage), key: section},
                         sort_keys=False), encoding="utf-8")
    best_path = out / "best.yaml"
    if best_path.is_file():
        config = yaml.safe_load(best_path.read_text(encoding="utf-8")) or {}
        if isinstance(config, dict) and (config.get("source") or {}).get("study") == study_name:
            config[key] = section
            write_best(BestResult.parse(config, str(best_path)).to_mapping(), best_path)
            written.append(best_path)
    return written


def soup_study(study_name: str, *, storage: str, out: str | Path = ".",
               device: str = "auto") -> tuple[dict[str, Any] | None, list[Path]]:
    """Build the greedy soup of a stored study's trials again, from the weights they kept (no
    trial runs, nothing trains; the search's data is read again to score it):
    ``out/soup.yaml``, and the ``soup`` section of ``out/best.yaml`` when that file is this
    study's. Returns the section (None when the study's space asks for no soup: nothing is
    written) and the files written.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for the forward passes.

    Raises:
        StorageError: no such study (see :func:`stored_study`).
        AutotransferError: the study recorded no space this version can read.
        DataError: the study's data cannot be read any more.

    Example:
        >>> from autotransfer.study.results.report import soup_study
        >>> section, files = soup_study("fashion-mnist-image-quick",
        ...                             storage="sqlite:///demo.db")  # doctest: +SKIP
    """
    study, space = stored_study(study_name, storage=storage)
    if space is None:
        raise AutotransferError(f"study {study_name!r} recorded no search space this version "
                                "can read; the soup needs its metric")
    if space.soup is None:
        return None, []
    started = time.perf_counter()
    data = study_data(study, space, selected(study))
    loaded = time.perf_counter() - started
    section = soup_config(study, space, data=data, device=device)
    if "selection" in section:
        section["selection"]["data_seconds"] = round(loaded, 3)
    return section, _write_section(Path(out), "soup", section, study_name, storage,
                                   "The greedy weight soup of a study's trials")
