"""``best.yaml`` as one typed model: what a search writes and ``train``/``predict`` read.

:class:`BestResult` is shared by the writer (:func:`autotransfer.study.results.report.
best_config`) and the readers (:func:`autotransfer.model.refit.train`,
:func:`autotransfer.model.predict.predict` given a ``best.yaml``). Versioned by ``schema``
(:data:`SCHEMA`); a version only ever adds keys, never renames one, so a file of any earlier
version still loads: a file without ``schema`` is version 1 (autotransfer 0.1), read as is.

Version 2 added:

- ``schema: 2``;
- ``scores``: ``{val: {metric: value}, test: {...}}``, every metric the trial recorded
  (:mod:`autotransfer.space.objectives`); each measured cost stays a top-level key by its
  objective's key (``latency_ms``, ``params_count``, ``peak_memory_mb``...);
- ``exports``: the model folders made from this result (``path`` relative to ``best.yaml``,
  ``format``, ``trial``), e.g. ``best-model`` of ``search --keep-best``, which ``predict``
  accepts through ``best.yaml``;
- ``ensemble``: a result that is several models (``kind: ensemble`` or ``soup``, its
  ``members`` with their ``weight``): the ensemble of the study's trials that the search
  builds from their kept predictions (:mod:`autotransfer.study.results.ensemble`: held-out
  ``val_score``, ``test_score`` beside the single pick's, both with intervals, the members'
  costs combined, a ``note``);
- ``soup`` (``kind: soup``): the greedy weight soup of the study's trials that share the
  pick's backbone and method, built from the weights they kept when the space has a ``soup``
  key (:mod:`autotransfer.study.results.soup`: ``members`` with ``weights``, the kept files,
  held-out ``val_score``, ``test_score`` beside the single pick's, one model's costs, the
  trials ``left_out`` and why, a ``note``);
- ``source.data_options`` as the search resolved them (the detected modality, the columns
  read), no longer as asked;
- ``epochs`` is the number of epochs the pick trained (a continued trial's total; before
  continuations, always the space's ``epochs``), and ``training``, written when the pick was
  continued or averaged checkpoints: ``{epochs, lengths, continuations, ended, averaging}``
  (each planned length, the space's ``epochs`` first; why a continuation ended early; what
  averaging chose and bought), which ``train`` replays.

Keys that no version declares (a cost registered by a plugin, a hand-written note) are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: The version :meth:`BestResult.to_mapping` writes.
SCHEMA = 2


class _Open(BaseModel):
    """A section that keeps the keys it does not declare (a later version's, a plugin's)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Source(_Open):
    """Where the result came from: the study, its trial and seed, the data and space."""

    study: str | None = None
    trial: int | None = None
    seed: int = 0
    data: str | None = None
    space: str | None = None
    val_fraction: float = 0.2
    storage: str | None = None
    data_options: dict[str, Any] | None = None  # autotransfer.data.options.DataOptions.to_yaml


class Member(_Open):
    """One trial of a front or of an ensemble: its backbone, hyperparameters and score (its
    costs as extra keys, by objective key)."""

    trial: int
    backbone: str | dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)
    val_score: float | None = None


class Ensemble(_Open):
    """A result that is several models: an ensemble (their probabilities averaged with each
    member's ``weight``) or a soup (their weights averaged uniformly into one model). Its
    scores, costs and ``note`` are extra keys
    (:func:`autotransfer.study.results.ensemble.build_ensemble` and
    :func:`autotransfer.study.results.soup.build_soup` list them)."""

    kind: Literal["ensemble", "soup"]
    members: list[Member] = Field(default_factory=list)


class Export(_Open):
    """A model folder made from this result (``path`` relative to ``best.yaml``)."""

    path: str
    format: str | None = None  # the exporter's library (timm, transformers...), when known
    trial: int | None = None


class BestResult(_Open):
    """A search's result, as ``best.yaml`` holds it (see the module docstring)."""

    schema_version: int = Field(1, alias="schema")  # absent: an autotransfer 0.1 file
    backbone: str | dict[str, Any]
    params: dict[str, Any]
    epochs: int | None = None  # the epochs the pick trained (its continuations included)
    # how long the pick trained and what its recipe bought (study.results.report.training_of)
    training: dict[str, Any] | None = None
    metric: str = "accuracy"
    val_score: float | None = None
    test_score: float | None = None
    val_score_ci95: list[float] | None = None
    test_score_ci95: list[float] | None = None
    classes: list[str] | None = None
    scores: dict[str, dict[str, float]] = Field(default_factory=dict)
    macro_f1: float | None = None
    per_class: dict[str, dict[str, Any]] | None = None
    test_macro_f1: float | None = None
    test_per_class: dict[str, dict[str, Any]] | None = None
    references: dict[str, Any] = Field(default_factory=dict)
    # the pick's gain over the best reference, with paired-bootstrap 95% intervals
    search_gain: dict[str, Any] | None = None
    transfer_effect: dict[str, Any] | None = None
    objectives: list[str] | None = None
    pick: str | None = None
    constraints: dict[str, float] | None = None
    pareto_front: list[Member] | None = None
    ensemble: Ensemble | None = None
    soup: Ensemble | None = None  # kind: soup
    exports: list[Export] = Field(default_factory=list)
    source: Source = Field(default_factory=Source)

    @property
    def backbone_id(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else str(self.backbone["id"])

    @classmethod
    def parse(cls, mapping: Any, where: str) -> BestResult:
        """The result of a ``best.yaml`` mapping; ``where`` names it in errors.

        Raises:
            ValueError: not a mapping, a missing ``backbone``/``params``, or a key of the
                wrong type (one line naming the key).
        """
        if not isinstance(mapping, dict):
            raise ValueError(f"{where}: expected a mapping with backbone and params")
        for key in ("backbone", "params"):
            if key not in mapping:
                raise ValueError(f"{where}: missing key {key!r}; expected the best.yaml that "
                                 "autotransfer search writes")
        try:
            return cls.model_validate(mapping)
        except ValidationError as exc:
            error = exc.errors()[0]
            at = ".".join(str(p) for p in error["loc"])
            raise ValueError(f"{where}: {at}: {error['msg']}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The ``best.yaml`` mapping: ``schema`` first, the keys that were given, in the
        declared order, undeclared ones (each cost, by its key) after ``classes``."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        extras = {k: data.pop(k) for k in list(self.model_extra or {}) if k in data}
        out: dict[str, Any] = {"schema": self.schema_version}
        for key, value in data.items():
            if key != "schema":
                out[key] = value
            if key == "classes":
                out.update(extras)
                extras = {}
        out.update(extras)
        return out

    def export_dir(self, best_yaml: str | Path) -> Path | None:
        """The first export's folder (relative paths from ``best_yaml``'s folder); None when
        the result lists none."""
        if not self.exports:
            return None
        path = Path(self.exports[0].path)
        return path if path.is_absolute() else Path(best_yaml).parent / path
