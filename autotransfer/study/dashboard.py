"""The study's note for optuna-dashboard: what the search is, in markdown."""

from __future__ import annotations

from autotransfer.contract.space import SearchSpace
from autotransfer.data import LabelledData
from autotransfer.study.report import best_trial
from autotransfer.study.workers import tally


class StudyNote:
    """The study's note in optuna-dashboard: data, space, storage (masked) and the best so far."""

    def __init__(self, dataset: LabelledData, space: SearchSpace, *, space_file: str | None,
                 storage: str, trials: int | None) -> None:
        import yaml

        sizes = ", ".join(f"{len(s)} {k}" for k, s in dataset.splits().items())
        self.head = "\n".join([
            "# autotransfer study",
            "",
            f"- **data**: `{dataset.source}` ({len(dataset.classes)} classes; {sizes})",
            f"- **storage**: `{storage}`",
            f"- **trials**: {trials if trials is not None else 'until timeout'}",
            "",
            "## Search space" + (f" (`{space_file}`)" if space_file else ""),
            "",
            "```yaml",
            yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False).rstrip(),
            "```",
        ])

    def body(self, study) -> str:
        done = tally(study)
        lines = [self.head, "", "## Best so far", ""]
        best = best_trial(study)
        if best is None:
            lines.append("no completed trial yet")
        else:
            test = best.test_score
            lines.append(
                f"trial {best.number}: `{best.backbone or '?'}` val {best.value:.4f}"
                + (f", test {test:.4f}" if test is not None else "")
                + f" ({done.counted} trials so far)"
            )
            lines += ["", "```yaml", _yaml(best.params or best.sampled), "```"]
            lines += _front_line(study)
        return "\n".join(lines) + "\n"

    def save(self, study) -> None:
        from optuna_dashboard import save_note

        save_note(study, self.body(study))


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False).rstrip()


def _front_line(study) -> list[str]:
    """The Pareto front of a multi-objective study (its trials, by the pick rule)."""
    from autotransfer.study.selection import front_of, rule_of

    rule = rule_of(study)
    if not rule.multi_objective:
        return []
    members = ", ".join(f"{r.number}" for r in front_of(study))
    return ["", f"Pareto front on {', '.join(rule.objectives)}: trials {members} (best: the "
                f"first by {rule.pick or rule.objectives[0]})"]
