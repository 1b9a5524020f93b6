"""Search-space YAML -> validated model -> ``trial.suggest_*`` calls.

Hyperparameters use Optuna's own short form; a plain scalar fixes a value::

    backbones: [packaged/mobilenetv2_100, {id: packaged/mobilenetv2_100, pretrained: false}]
    epochs: 3          # the first length a trial gets
    max_epochs: 12     # a leader that still improves is continued up to this (default: epochs)
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
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from autotransfer.errors import SpaceError
from autotransfer.space.budget import BudgetPlan
from autotransfer.space.ensemble import EnsemblePlan
from autotransfer.space.factories import accepted
from autotransfer.space.hyperparameters import HYPERPARAMETERS, Scalar, defaults, for_method
from autotransfer.space.methods import declare_plugin_methods, names_known
from autotransfer.space.objectives import (
    cost_names,
    declare_plugin_objectives_named,
    get_objective,
    metric_names,
)
from autotransfer.space.recipes import DEFAULT as DEFAULT_RECIPE
from autotransfer.space.recipes import as_param
from autotransfer.space.recipes import resolve as resolve_recipe
from autotransfer.space.soup import SoupPlan
from autotransfer.space.strategies import build
from autotransfer.space.yaml_file import describe, problem_lines, read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_string_number(value: Any) -> Any:
    """A bound is a number: a quoted one (``"3e-3"``) is refused as a fixed value or a choice
    is, not read by pydantic's lax mode."""
    if isinstance(value, str):
        raise ValueError(f"must be a number, got the string {value!r}; write it without quotes")
    return value


class _Range(_Strict):
    @field_validator("low", "high", "step", mode="before", check_fields=False)
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return _no_string_number(value)


class FloatDistribution(_Range):
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


class IntDistribution(_Range):
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


class RankedBackbones(_Strict):
    """``backbones: {rank: 6, max_params: 10M, ...}``: the ``rank`` best candidates of the
    data's modality by their published score, within the bounds
    (:mod:`autotransfer.contract.ranking`); expanded into ids when the study is created."""

    rank: int = Field(ge=1, le=100)
    max_params: int | str | None = None  # 10M, 500K or a count
    min_throughput: float | None = Field(None, gt=0)  # images/s on ``device``'s row
    # ms at batch 1 on the search's device, by the device-aware prior: a candidate is dropped
    # when its prior is over prior.MARGIN (2) times this (autotransfer.study.budget.prior)
    max_latency_ms: float | None = Field(None, gt=0)
    device: Literal["cpu", "gpu"] = "cpu"
    license: str | None = None
    # keep only the accuracy/throughput front on this device's row (ranking.pareto_front)
    front: Literal["cpu", "gpu"] | None = None
    # read the current tables and the Hugging Face Hub's metadata when the study is created
    # (text and audio: the Hub's models; default: the shipped snapshot and packaged weights)
    online: bool = False
    # the ids used when the hub is off (HF_HUB_OFFLINE=1) or does not answer, in this order;
    # None: the best candidates within the bounds that load here
    offline: list[str] | None = Field(None, min_length=1)

    @field_validator("max_params")
    @classmethod
    def _a_count(cls, value: int | str | None) -> int | str | None:
        from autotransfer.contract.ranking import parse_count
        from autotransfer.errors import OptionError

        try:
            parse_count(value) if value is not None else None
        except OptionError as exc:
            raise ValueError(exc.problem.strip()) from None
        return value


class LatencySpec(_Strict):
    """How a trial's ``latency_ms`` and ``throughput`` are measured: ``runtime: pytorch`` (eager,
    on the search's device) or ``onnxruntime`` (the trained model exported to ONNX and run by
    ONNX Runtime on the CPU, what ``train --export onnx`` ships); ``precision: int8`` (ONNX
    Runtime only) measures the model quantised as ``--quantize int8`` would."""

    runtime: Literal["pytorch", "onnxruntime"] = "pytorch"
    precision: Literal["fp32", "int8"] = "fp32"

    def __str__(self) -> str:
        """The YAML flow mapping of these settings (the docs' default cell)."""
        return f"{{runtime: {self.runtime}, precision: {self.precision}}}"

    @model_validator(mode="after")
    def _int8_in_onnxruntime(self) -> LatencySpec:
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise ValueError("latency: precision int8 is measured in ONNX Runtime; write "
                             "latency: {runtime: onnxruntime, precision: int8}")
        return self


class StrategySpec(BaseModel):
    """A pruner, sampler or training recipe with settings: ``{type: hyperband,
    reduction_factor: 2}``, or a factory by import path: ``{factory:
    "my_package.schedulers:make_pruner", eta: 3}`` (:mod:`autotransfer.space.strategies`,
    :mod:`autotransfer.space.recipes`)."""

    model_config = ConfigDict(extra="allow")
    type: str | None = None
    factory: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StrategySpec:
        if (self.type is None) == (self.factory is None):
            raise ValueError("give either type: <name> or factory: 'module:attribute', not "
                             + ("both" if self.type is not None else "neither"))
        return self

    @model_serializer(mode="wrap")
    def _set_keys_only(self, handler) -> dict[str, Any]:
        """Without the form not used, so that a study's space fingerprint is as before."""
        return {k: v for k, v in handler(self).items()
                if not (k in ("type", "factory") and v is None)}


class SearchSpace(_Strict):
    """A validated search space (see the module docstring for the YAML form)."""

    # a list of ids, or a ranking rule that the study expands into ids (study.ranked)
    backbones: Annotated[
        Annotated[list[BackboneSpec], Field(min_length=1), Tag("[ids]")]
        | Annotated[RankedBackbones, Tag("(rank)")],
        Discriminator(lambda v: "(rank)" if isinstance(v, dict | RankedBackbones) else "[ids]"),
    ]
    epochs: int = Field(ge=1, le=1000)  # a trial's first planned length
    # the longest a continued trial may train (study.budget.rules.Continuation); None: epochs
    max_epochs: int | None = Field(None, ge=1, le=1000)
    metric: str = "accuracy"  # a registered metric (autotransfer.space.objectives)
    pruner: str | StrategySpec = "hyperband"
    sampler: str | StrategySpec = "tpe"
    # what a training step is (its loss, batch streams, epoch-end steps): space.recipes
    recipe: str | StrategySpec = DEFAULT_RECIPE
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    params: dict[str, Distribution | Scalar] = Field(default_factory=dict)
    # objectives and bounds: autotransfer.space.objectives; the pick: study.selection
    objectives: list[str] | None = None  # [metric, latency_ms, ...]: a multi-objective study
    constraints: dict[str, float] = Field(default_factory=dict)  # upper bounds on costs
    pick: str | None = None  # the objective that picks best.yaml's trial on the front
    # what latency_ms and throughput measure: PyTorch eager, or the ONNX export (fp32 / int8)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    # how a small budget is spent (references, rungs, costs): autotransfer.space.budget
    budget: BudgetPlan = Field(default_factory=BudgetPlan)
    # the ensemble of the study's trials built after it (space.ensemble); false: None, none
    ensemble: EnsemblePlan | None = Field(default_factory=EnsemblePlan)
    # the greedy weight soup of the study's trials (space.soup): trials keep their weights
    soup: SoupPlan | None = None

    @field_validator("ensemble", mode="before")
    @classmethod
    def _false_is_off(cls, value: Any) -> Any:
        if value is False:
            return None
        if value is None:
            raise ValueError("expected false or {max_members: N}, got nothing")
        return value

    @field_validator("soup", mode="before")
    @classmethod
    def _soup_false_is_off(cls, value: Any) -> Any:
        # None is the default (off), so a dumped space (model_dump) parses back
        return None if value is False else value

    @field_validator("backbones", mode="before")
    @classmethod
    def _ids_to_specs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        if self.max_epochs is not None and self.max_epochs < self.epochs:
            raise ValueError(f"max_epochs: must be at least epochs ({self.epochs}), the first "
                             f"length a trial gets, got {self.max_epochs}")
        for kind in ("pruner", "sampler"):  # Optuna's own constructors check the settings
            try:
                build(kind, getattr(self, kind), epochs=self.epochs)
            except ValueError as exc:
                raise ValueError(f"{kind}: {exc}") from None
        _check_recipe(self.recipe)
        labels = [b.label for b in self.backbones] if isinstance(self.backbones, list) else []
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(
                f"backbone {twice[0]!r} is listed twice; give one of them a distinct name"
            )
        self.declare_plugins()  # a plugin's method or objective, maybe
        problems = [p for name, spec in self.params.items() for p in _param_problems(name, spec)]
        if problems:  # every problem of the file at once, one per line
            raise ValueError("\n".join(problems))
        for name, spec in self.params.items():
            self.params[name] = _integral(name, spec)
        methods = self.methods
        for name in self.params:
            only = HYPERPARAMETERS[name].method
            if only is not None and only not in methods:
                problems.append(
                    f"params.{name}: only the {only} method reads it, but params.method allows "
                    f"{', '.join(methods)}; add {only} to params.method"
                )
        if problems:
            raise ValueError("\n".join(problems))
        self._check_objectives()
        return self

    def declare_plugins(self) -> None:
        """Declare the tuning methods and objectives that the plugins offer when this space
        names one that is not declared yet (the plugins load only then). A spawned worker,
        which receives the parsed space, calls it before it reads an objective."""
        if not names_known(list(self.params), self.methods):
            declare_plugin_methods()
        declare_plugin_objectives_named([self.metric, *(self.objectives or []),
                                         *self.constraints, *filter(None, [self.pick])])

    @property
    def epoch_cap(self) -> int:
        """The most epochs a trial may train: ``max_epochs``, or ``epochs`` when unset (no
        trial is continued)."""
        return self.max_epochs if self.max_epochs is not None else self.epochs

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
        if self.metric not in metric_names():
            raise ValueError(f"metric: unknown metric {self.metric!r}; expected one of "
                             + ", ".join(metric_names()))
        for name, bound in self.constraints.items():
            if name not in cost_names():
                raise ValueError(f"constraints.{name}: not a bounded measure; expected one of "
                                 + ", ".join(cost_names()))
            if not bound > 0:
                raise ValueError(f"constraints.{name}: an upper bound must be > 0, got {bound!r}")
        if self.objectives is not None:
            known = (*metric_names(), *cost_names())
            unknown = [o for o in self.objectives if o not in known]
            if unknown:
                raise ValueError(f"objectives: unknown objective {unknown[0]!r}; expected "
                                 + ", ".join(known))
            metrics = [o for o in self.objectives if get_objective(o).measure == "score"]
            if len(metrics) != 1 or len(set(self.objectives)) != len(self.objectives):
                raise ValueError(f"objectives: expected one metric "
                                 f"({' or '.join(metric_names())}) "
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
        self.declare_plugins()  # a spawned worker got the parsed space: declared here too
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
        recipe = as_param(self.recipe)
        if recipe is not None:  # the default recipe is left out, as before recipes were named
            values["recipe"] = recipe
        return for_method(values)


def _check_recipe(value: str | StrategySpec) -> None:
    """The space's ``recipe`` names a known recipe, and its factory takes the settings (it is
    called once, as :func:`autotransfer.finetune.recipe.recipe_for` will call it).

    Raises:
        ValueError: an unknown name, a factory that cannot be imported, settings for the
            builtin recipe, or settings the factory rejects (its message).
    """
    try:
        name, factory, settings = resolve_recipe(value)
    except ValueError as exc:
        raise ValueError(f"recipe: {exc}") from None
    if factory is None:
        if settings:
            raise ValueError(f"recipe: {name} takes no settings, got {', '.join(settings)} "
                             "(its label_smoothing is params.label_smoothing)")
        return
    try:
        factory(**{**accepted(factory, {"label_smoothing": 0.0}), **settings})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"recipe: {name}: {exc}") from None


def _param_problems(name: str, spec: Any) -> list[str]:
    """What is wrong with ``params.<name>``, one line per problem (none when it is valid)."""
    known = HYPERPARAMETERS.get(name)
    if known is None:
        close = difflib.get_close_matches(name, list(HYPERPARAMETERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"params.{name}: unknown hyperparameter{hint}; expected one of "
                + ", ".join(HYPERPARAMETERS)]
    problems = []
    for field, value in _values_to_check(spec):
        problem = known.check(value)
        if problem:
            problems.append(f"params.{name}{field}: {problem}")
    return problems


def _integral(name: str, spec: Any) -> Any:
    """An integer hyperparameter written ``16.0`` (fixed or a choice) as the int 16."""
    if HYPERPARAMETERS[name].kind is not int:
        return spec
    if isinstance(spec, CategoricalDistribution):
        spec.choices = [_integral(name, c) for c in spec.choices]
        return spec
    return int(spec) if isinstance(spec, float) and spec.is_integer() else spec


def _values_to_check(spec: Any) -> list[tuple[str, Any]]:
    if isinstance(spec, (FloatDistribution, IntDistribution)):
        return [(".low", spec.low), (".high", spec.high)]
    if isinstance(spec, CategoricalDistribution):
        return [(f".choices[{i}]", c) for i, c in enumerate(spec.choices)]
    return [("", spec)]


def parse_space(data: Any, source: str = "<search space>", lines: dict | None = None,
                problems: list[tuple[Any, str]] | None = None) -> SearchSpace:
    """Validate already-parsed YAML.

    Every problem of the data is reported at once, one line each that names ``source``, the
    line (when ``lines``, from :func:`autotransfer.space.yaml_file.read_yaml`, knows it) and
    the key; ``problems`` are ``(key path, message)`` found while reading the file.

    Raises:
        SpaceError: the data is not a valid space (one line per problem).
    """
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: expected a mapping with backbones, epochs and params")
    found = [(key, f"{key}: {message}") for key, message in
             ((".".join(map(str, path)), message) for path, message in problems or [])]
    data, shape = _shape_problems(data)
    found += shape
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        found += describe(exc) or [("", str(exc).splitlines()[0])]
    if found:
        raise SpaceError(problem_lines(found, source, lines or {}))
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (numbers as YAML 1.2 reads them, a key given
    twice refused: :mod:`autotransfer.space.yaml_file`).

    Raises:
        SpaceError: the file is missing, unreadable, not YAML or not a valid space.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such search-space file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read search-space file ({exc})") from None
    try:
        data, lines, problems = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(f"{where}: invalid YAML ({problem})") from None
    return parse_space(data, str(path), lines, problems)


def _declare_plugin_methods_named(params: Any) -> None:
    """Ask the plugins for their methods when ``params`` names a method or a hyperparameter
    that is not declared yet (a plugin's ``register_methods`` may declare it), before any name
    is checked."""
    if not isinstance(params, dict):
        return
    method = params.get("method")
    methods = (method.get("choices") or [] if isinstance(method, dict)
               else [method] if isinstance(method, str) else [])
    if not names_known(list(params), [m for m in methods if isinstance(m, str)]):
        declare_plugin_methods()


def _shape_problems(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Mistakes of shape that pydantic would word obscurely, and ``data`` without them (so that
    the rest is still checked): a hyperparameter outside ``params``, a plain list where a
    categorical was meant, a search without a type, a bare backbone string."""
    data, problems = dict(data), []
    _declare_plugin_methods_named(data.get("params"))
    for key in [k for k in data if k not in SearchSpace.model_fields and k in HYPERPARAMETERS]:
        problems.append((key, f"{key!r} is a hyperparameter: indent it under params:"))
        del data[key]
    if isinstance(data.get("backbones"), str):
        problems.append(("backbones", "backbones: expected a list, got the string "
                                      f"{data['backbones']!r}; write backbones: "
                                      f"[{data['backbones']}]"))
        data["backbones"] = [data["backbones"]]
    if "params" in data and data["params"] is None:  # `params:` with nothing under it
        data["params"] = {}
    if isinstance(data.get("params"), dict):
        params = data["params"] = dict(data["params"])
        for name, spec in list(params.items()):
            if not isinstance(spec, (dict, list)) and _param_problems(name, spec):
                problems += [(f"params.{name}", text) for text in _param_problems(name, spec)]
                del params[name]  # checked here, so that pydantic's errors do not hide it
            elif isinstance(spec, list):
                choices = yaml.safe_dump(spec, default_flow_style=True).strip()
                problems.append((f"params.{name}", f"params.{name}: a plain list is not a "
                                 "search; write a "
                                 f"categorical as {{type: categorical, choices: {choices}}}"))
                del params[name]
            elif _choice_problems(name, spec):
                problems += [(f"params.{name}", text) for text in _choice_problems(name, spec)]
                del params[name]
            elif isinstance(spec, dict) and "type" not in spec:
                problems.append((f"params.{name}", f"params.{name}: a search needs a type: "
                                 "{type: float, "
                                 "low: ..., high: ...}, {type: int, ...} or {type: categorical, "
                                 "choices: [...]}"))
                del params[name]
    return data, problems


def _choice_problems(name: str, spec: Any) -> list[str]:
    """The invalid choices of a categorical ``params.<name>`` (checked before pydantic, so
    that another key's error does not hide them)."""
    known = HYPERPARAMETERS.get(name)
    if known is None or not isinstance(spec, dict) or spec.get("type") != "categorical" \
            or not isinstance(spec.get("choices"), list):
        return []
    return [f"params.{name}.choices[{i}]: {problem}" for i, choice in enumerate(spec["choices"])
            if (problem := known.check(choice))]
