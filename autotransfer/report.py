"""What a search ends with: the leaderboard and the re-runnable ``best.yaml``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from autotransfer.space import SearchSpace


def leaderboard(study) -> list[dict[str, Any]]:
    """One row per finished trial, best first: completed by value, then pruned, then failed."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        attrs = t.user_attrs
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "backbone": t.params.get("backbone", attrs.get("backbone", "?")),
                "freeze_fraction": attrs.get("params", {}).get("freeze_fraction"),
                "lr": attrs.get("params", {}).get("lr"),
                "val_score": t.value if t.state == TrialState.COMPLETE else last,
                "test_score": attrs.get("test_score"),
                "epochs": len(t.intermediate_values),
                "seconds_per_epoch": attrs.get("seconds_per_epoch"),
                "reason": attrs.get("fail_reason") or attrs.get("prune_reason") or "",
            }
        )
    order = {"complete": 0, "pruned": 1, "fail": 2}
    rows.sort(key=lambda r: (order[r["state"]], -(r["val_score"] or 0.0)))
    return rows


def write_leaderboard_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)


def best_config(study, space: SearchSpace, *, data: str, storage: str, space_file: str | None):
    """The best completed trial as the ``best.yaml`` mapping (None when no trial completed)."""
    from optuna.trial import TrialState

    completed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not completed:
        return None
    best = max(completed, key=lambda t: t.value)
    config: dict[str, Any] = {
        "backbone": space.backbone(best.params["backbone"]).to_yaml(),
        "params": best.user_attrs.get("params") or space.resolve(best.params),
        "epochs": space.epochs,
        "metric": space.metric,
        "val_score": float(best.value),
    }
    if best.user_attrs.get("test_score") is not None:
        config["test_score"] = float(best.user_attrs["test_score"])
    config["classes"] = best.user_attrs.get("classes")
    config["source"] = {
        "study": study.study_name,
        "trial": best.number,
        "data": data,
        "space": space_file,
        "storage": storage,  # already masked by the caller
    }
    return config


def write_best(config: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Best transfer configuration found by `autotransfer search`.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
