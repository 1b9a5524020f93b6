"""Search-space YAML -> validated model -> ``trial.suggest_*`` calls.

Hyperparameters use Optuna's own short form; a plain scalar fixes a value::

    backbones: [packaged/mobilenetv2_100, {id: packaged/mobilenetv2_100, pretrained: false}]
    epochs: 3
    params:
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [16, 32]}
      label_smoothing: 0.1
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autotransfer.errors import SpaceError
from autotransfer.space.budget import BudgetPlan
from autotransfer.space.hyperparameters import HYPERPARAMETERS, Scalar, defaults, for_method
from autotransfer.space.methods import declare_plugin_methods, names_known
from autotransfer.space.objectives import COSTS, METRICS, OBJECTIVES
from autotransfer.space.strategies import build


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatDistribution(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatDistribution:
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low:g}, high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 when log is true, got low={self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be used together")
        return self


class IntDistribution(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _check(self) -> IntDistribution:
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 when log is true, got low={self.low}")
        return self


class CategoricalDistribution(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


Distribution = Annotated[
    FloatDistribution | IntDistribution | CategoricalDistribution,
    Field(discriminator="type"),
]


class BackboneSpec(_Strict):
    """A candidate backbone: a registered id plus options for that backbone."""

    id: str
    pretrained: bool = True
    weights: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The categorical choice that stands for this candidate in the study."""
        if self.name:
            return self.name
        return self.id if self.pretrained else f"{self.id} (random init)"

    def load_options(self, entry: Any = None, *, trust_remote_code: bool = False
                     ) -> dict[str, Any]:
        """The loader's options for this candidate; ``trust_remote_code`` is passed only to an
        ``entry`` whose loader takes it (code shipped with a checkpoint never runs otherwise)."""
        options: dict[str, Any] = {"weights": self.weights} if self.weights is not None else {}
        if trust_remote_code and entry is not None and "trust_remote_code" in entry.options:
            options["trust_remote_code"] = True
        return options

    def to_yaml(self) -> str | dict[str, Any]:
        data = self.model_dump(exclude_defaults=True)
        return self.id if data == {"id": self.id} else data


class StrategySpec(BaseModel):
    """A pruner or sampler with settings: ``{type: hyperband, reduction_factor: 2}``."""

    model_config = ConfigDict(extra="allow")
    type: str


class SearchSpace(_Strict):
    """A validated search space (see the module docstring for the YAML form)."""

    backbones: list[BackboneSpec] = Field(min_length=1)
    epochs: int = Field(ge=1, le=1000)
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    pruner: str | StrategySpec = "hyperband"
    sampler: str | StrategySpec = "tpe"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    params: dict[str, Distribution | Scalar] = Field(default_factory=dict)
    # objectives and bounds: autotransfer.space.objectives; the pick: study.selection
    objectives: list[str] | None = None  # [metric, latency_ms, ...]: a multi-objective study
    constraints: dict[str, float] = Field(default_factory=dict)  # upper bounds on costs
    pick: str | None = None  # the objective that picks best.yaml's trial on the front
    # how a small budget is spent (references, rungs, costs): autotransfer.space.budget
    budget: BudgetPlan = Field(default_factory=BudgetPlan)

    @field_validator("backbones", mode="before")
    @classmethod
    def _ids_to_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for kind in ("pruner", "sampler"):  # Optuna's own constructors check the settings
            try:
                build(kind, getattr(self, kind), epochs=self.epochs)
            except ValueError as exc:
                raise ValueError(f"{kind}: {exc}") from None
        labels = [b.label for b in self.backbones]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(
                f"backbone {twice[0]!r} is listed twice; give one of them a distinct name"
            )
        if not names_known(list(self.params), self.methods):  # a plugin's method, maybe
            declare_plugin_methods()
        for name, spec in self.params.items():
            known = HYPERPARAMETERS.get(name)
            if known is None:
                close = difflib.get_close_matches(name, list(HYPERPARAMETERS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"params.{name}: unknown hyperparameter{hint}; expected one of "
                    + ", ".join(HYPERPARAMETERS)
                )
            for field, value in _values_to_check(spec):
                problem = known.check(value)
                if problem:
                    raise ValueError(f"params.{name}{field}: {problem}")
        methods = self.methods
        for name in self.params:
            only = HYPERPARAMETERS[name].method
            if only is not None and only not in methods:
                raise ValueError(
                    f"params.{name}: only the {only} method reads it, but params.method allows "
                    f"{', '.join(methods)}; add {only} to params.method"
                )
        self._check_objectives()
        return self

    @property
    def methods(self) -> list[str]:
        """The tuning methods a trial of this space may use (``params.method``)."""
        spec = self.params.get("method", HYPERPARAMETERS["method"].default)
        if isinstance(spec, CategoricalDistribution):
            return [str(c) for c in spec.choices]
        return [str(spec)]

    @field_validator("constraints", mode="before")
    @classmethod
    def _no_bool_bounds(cls, value: Any) -> Any:
        # YAML's true/false are ints to pydantic: `latency_ms: true` must not become a 1 ms bound
        if isinstance(value, dict):
            for name, bound in value.items():
                if isinstance(bound, bool):
                    raise ValueError(f"{name}: expected a number (an upper bound), "
                                     f"got {bound!r}")
        return value

    def _check_objectives(self) -> None:
        for name, bound in self.constraints.items():
            if name not in COSTS:
                raise ValueError(f"constraints.{name}: not a bounded measure; expected one of "
                                 + ", ".join(COSTS))
            if not bound > 0:
                raise ValueError(f"constraints.{name}: an upper bound must be > 0, got {bound!r}")
        if self.objectives is not None:
            unknown = [o for o in self.objectives if o not in OBJECTIVES]
            if unknown:
                raise ValueError(f"objectives: unknown objective {unknown[0]!r}; expected "
                                 + ", ".join(OBJECTIVES))
            metrics = [o for o in self.objectives if o in METRICS]
            if len(metrics) != 1 or len(set(self.objectives)) != len(self.objectives):
                raise ValueError(f"objectives: expected one metric ({' or '.join(METRICS)}) "
                                 f"and distinct costs, got {self.objectives}")
            if "metric" in self.model_fields_set and self.metric != metrics[0]:
                raise ValueError(f"objectives: its metric {metrics[0]!r} is not metric "
                                 f"{self.metric!r}")
            self.metric = metrics[0]  # type: ignore[assignment]
        if self.pick is not None and self.pick not in self.objective_names:
            raise ValueError(f"pick: {self.pick!r} is not one of the objectives "
                             f"{self.objective_names}")

    @property
    def objective_names(self) -> list[str]:
        """The study's objectives in the order of its values: the metric first."""
        rest = [o for o in self.objectives or [] if o != self.metric]
        return [self.metric, *rest]

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_names) > 1

    def backbone(self, label: str) -> BackboneSpec:
        return next(b for b in self.backbones if b.label == label)

    def suggest(self, trial: Any) -> tuple[BackboneSpec, dict[str, Any]]:
        """Sample a backbone and every hyperparameter for ``trial`` (fixed ones included)."""
        label = trial.suggest_categorical("backbone", [b.label for b in self.backbones])
        values = {}
        method = self.params.get("method", HYPERPARAMETERS["method"].default)
        if isinstance(method, CategoricalDistribution):  # first: what else applies depends on it
            values["method"] = method = trial.suggest_categorical("method", method.choices)
        for name, spec in self.params.items():
            if name == "method" or HYPERPARAMETERS[name].method not in (None, method):
                continue  # a hyperparameter of another tuning method: not sampled
            if isinstance(spec, FloatDistribution):
                values[name] = trial.suggest_float(
                    name, spec.low, spec.high, log=spec.log, step=spec.step
                )
            elif isinstance(spec, IntDistribution):
                values[name] = trial.suggest_int(
                    name, spec.low, spec.high, log=spec.log, step=spec.step
                )
            elif isinstance(spec, CategoricalDistribution):
                values[name] = trial.suggest_categorical(name, spec.choices)
        return self.backbone(label), self.resolve(values)

    def resolve(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Every hyperparameter: ``sampled`` values, then fixed ones, then defaults."""
        values = defaults()
        values.update({k: v for k, v in self.params.items() if not isinstance(v, BaseModel)})
        values.update({k: v for k, v in sampled.items() if k in HYPERPARAMETERS})
        return for_method(values)


def _values_to_check(spec: Any) -> list[tuple[str, Any]]:
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        return [(".low", spec.low), (".high", spec.high)]
    if isinstance(spec, CategoricalDistribution):
        return [(f".choices[{i}]", c) for i, c in enumerate(spec.choices)]
    return [("", spec)]


def parse_space(data: Any, source: str = "<search space>") -> SearchSpace:
    """Validate already-parsed YAML; errors are one line that names ``source`` and the key."""
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: expected a mapping with backbones, epochs and params")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as exc:
        raise SpaceError(f"{source}: {_describe(exc)}") from None


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such search-space file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read search-space file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(f"{where}: invalid YAML ({problem})") from None
    return parse_space(data, str(path))


def _describe(exc: ValidationError) -> str:
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    # pydantic puts union members in the location; keep the user's own keys
    loc = [str(p) for p in error["loc"] if not any(c in str(p) for c in "[(")]
    loc = [p for p in loc if p not in ("bool", "int", "float", "str", "none")]
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, _, name = key.rpartition(".")
        return f"unknown key {name!r}" + (f" in {parent}" if parent else "")
    if kind == "missing":
        return f"missing key {key!r}"
    if kind == "union_tag_invalid":
        return f"{key}.type: must be float, int or categorical, got {error['input'].get('type')!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}" if key else message
