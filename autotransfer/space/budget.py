"""How a search spends a small budget: the search space's ``budget`` key.

Every mechanism is on by default; each can be switched off in the space, so that one run of the
same code measures what it buys (an ablation)::

    budget:
      reference_order: ranked   # or listed: the references in the order the space lists them
      reference_share: 0.333    # at most this share of time_budget / timeout for references
      rungs: fitted             # or pruner: the space's pruner as set; off: no pruning at all
      cost_aware: true          # false: no measured cost in the start rule or the sampler
      patience: null            # 3: a trial whose score has not improved for 3 epochs ends

What each one does: :mod:`autotransfer.study.references.order` (order),
:mod:`autotransfer.study.references.share` (share), :mod:`autotransfer.study.budget.rungs`
(rungs), :mod:`autotransfer.study.budget.backbone_cost` (the measured costs that
``cost_aware`` uses) and :class:`autotransfer.study.budget.rules.Plateau` (``patience``, the
one mechanism off by default).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

#: The references' share of a ``time_budget`` or ``timeout`` by default: a third, so that at
#: least two thirds of a small budget goes to sampled trials.
REFERENCE_SHARE = 1 / 3
REFERENCE_ORDERS = ("ranked", "listed")
RUNGS = ("fitted", "pruner", "off")


class BudgetPlan(BaseModel):
    """The ``budget`` key of a search space (every mechanism on by default).

    Attributes:
        reference_order: ``ranked``: linear probes first, cheapest first; then the default
            configurations by the pre-screen's rank, else by their backbone's linear-probe
            score, ties by measured cost. ``listed``: kinds in that order, backbones as listed.
        reference_share: a fraction in (0, 1]: under ``time_budget`` or ``timeout`` the
            references take at most this share of it; one that cannot finish in what is left
            of the share does not start (1.0: the whole budget).
        rungs: ``fitted``: the space's pruner, a Hyperband replaced by one bracket of
            successive halving from one epoch when the expected trial count is too small for
            its brackets; ``pruner``: the space's pruner as set; ``off``: every trial runs all
            its epochs.
        cost_aware: the time budget's start rule falls back on each backbone's measured cost,
            and early sampled trials draw cheaper backbones first among those of similar
            promise.
        patience: early stopping on a plateau: a trial whose validation score has not beaten
            its best by more than 0.001 for this many epochs ends after that epoch and
            completes with what it has (not pruned; the reason is recorded). None (the
            default): every trial trains its planned length, so that a space's results stay
            what they were and a cosine's last epochs, which often gain most, are never cut.
    """

    model_config = ConfigDict(extra="forbid")

    reference_order: str = "ranked"
    reference_share: float = REFERENCE_SHARE
    rungs: str = "fitted"
    cost_aware: bool = True
    patience: int | None = None

    @field_validator("reference_order", mode="before")
    @classmethod
    def _order(cls, value: Any) -> Any:
        if value not in REFERENCE_ORDERS:
            raise ValueError(f"must be {' or '.join(REFERENCE_ORDERS)}, got {value!r}")
        return value

    @field_validator("rungs", mode="before")
    @classmethod
    def _rungs(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads `on` and `off` as booleans
            return "fitted" if value else "off"
        if value not in RUNGS:
            raise ValueError(f"must be {', '.join(RUNGS[:-1])} or {RUNGS[-1]}, got {value!r}")
        return value

    @field_validator("reference_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value <= 1):
            raise ValueError(f"must be a fraction in (0, 1], got {value!r}")
        return float(value)

    @field_validator("cost_aware", mode="before")
    @classmethod
    def _cost_aware(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value

    @field_validator("patience", mode="before")
    @classmethod
    def _patience(cls, value: Any) -> Any:
        if value is None or value is False:  # YAML's off
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be a whole number of epochs >= 1, or null (off), got "
                             f"{value!r}")
        return value

    def __str__(self) -> str:
        """The YAML flow mapping of these settings (the docs' default cell)."""
        return (f"{{reference_order: {self.reference_order}, reference_share: "
                f"{self.reference_share:.3g}, rungs: {self.rungs}, cost_aware: "
                f"{str(self.cost_aware).lower()}, patience: "
                f"{'null' if self.patience is None else self.patience}}}")

    def is_default(self) -> bool:
        """Every mechanism on, at its default setting."""
        return self == BudgetPlan()
