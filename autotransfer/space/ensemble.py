"""The search space's ``ensemble`` key: the ensemble of the study's own trials built after it.

::

    ensemble: {max_members: 5}   # the default: at most 5 distinct trials
    ensemble: false              # no ensemble

Built from the probabilities every completed trial keeps, without training
(:mod:`autotransfer.study.results.ensemble`, Caruana et al. 2004's ensemble selection).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Distinct trials an ensemble may hold by default.
MAX_MEMBERS = 5


class EnsemblePlan(BaseModel):
    """The ``ensemble`` key of a search space (``false`` in the YAML: None on the space).

    Attributes:
        max_members: at most this many distinct trials (1: the single best on validation).
    """

    model_config = ConfigDict(extra="forbid")

    max_members: int = Field(MAX_MEMBERS, ge=1, le=100)

    def __str__(self) -> str:
        """The YAML flow mapping of these settings (the docs' default cell)."""
        return f"{{max_members: {self.max_members}}}"

    @model_validator(mode="before")
    @classmethod
    def _true_is_default(cls, value: Any) -> Any:
        if value is True:  # `ensemble: true`
            return {}
        return value
