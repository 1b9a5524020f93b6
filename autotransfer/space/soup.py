"""The search space's ``soup`` key: the greedy weight soup of the study's own trials.

::

    soup: {max_ingredients: 5}   # keep the weights of the best 5 trials per backbone and method
    soup: true                   # the same, with the default
    soup: false                  # no soup (the default: keeping weights costs disk)

With it, each completed trial that may become an ingredient keeps its weights (adapters merged)
in the search's output folder, at most ``max_ingredients`` per (backbone, weights, method)
group; after the search the greedy soup over the pick's group is built from them, without
training (:mod:`autotransfer.study.results.soup`, Wortsman et al. 2022).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Trials whose weights are kept per (backbone, weights, method) group by default.
MAX_INGREDIENTS = 5


class SoupPlan(BaseModel):
    """The ``soup`` key of a search space (absent or ``false`` in the YAML: None on the space).

    Attributes:
        max_ingredients: keep the weights of at most this many trials per (backbone, weights,
            method) group, the best by validation score; the soup averages at most this many.
    """

    model_config = ConfigDict(extra="forbid")

    max_ingredients: int = Field(MAX_INGREDIENTS, ge=1, le=100)

    def __str__(self) -> str:
        """The YAML flow mapping of these settings (the docs' default cell)."""
        return f"{{max_ingredients: {self.max_ingredients}}}"

    @model_validator(mode="before")
    @classmethod
    def _true_is_default(cls, value: Any) -> Any:
        if value is True:  # `soup: true`
            return {}
        return value
