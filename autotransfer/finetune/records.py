"""The one schema of what a search stores in Optuna: a trial's record and the study's record.

Every user attribute autotransfer puts on a trial is written by :class:`TrialWriter` and read
back as a :class:`TrialRecord`; every user attribute of the study goes through
:class:`StudyRecord` and the ``set_*`` functions below. This is the pattern of Optuna's
``study/_tell.py``, the one place that writes a trial's state and values: to change what a
trial records, change this module (and the readers see the new field as an attribute).

It lives in ``finetune``, below both ``study`` (which writes and reads the records) and
``model`` (whose refit and soup read a study's trials back), so that neither reads a trial's
``user_attrs`` by key; it imports only :mod:`autotransfer.finetune.predictions` and
:mod:`autotransfer.space.objectives` (it was ``autotransfer.study.records`` before #35).

The stored keys are those of autotransfer 0.1 (``peak_memory_mb`` included, though the value is
in MiB), so studies written before this module stay readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autotransfer.finetune.predictions import LIMIT_CHARS, decode, encode
from autotransfer.space.objectives import objectives

# Trial user attributes (the stored keys; never rename one: databases hold them).
BACKBONE = "backbone"  # the backbone id (the sampled label is the trial's "backbone" param)
PRETRAINED = "pretrained"
PARAMS = "params"  # every hyperparameter the trial trained with, sampled or fixed
DEVICE = "device"
CLASSES = "classes"
SEED = "seed"  # the split's seed; training used seed + trial number
PARAMETER_COUNT = "parameter_count"
TRAINABLE_PARAMETERS = "trainable_parameters"
N_GROUPS = "n_groups"
N_FROZEN_GROUPS = "n_frozen_groups"
EPOCH_PREFIX = "epoch_"  # epoch_<n>: {"train_loss", "val_loss", and each metric: "accuracy"...}
ACTIVATION_CACHE = "activation_cache"
CACHE_SECONDS = "cache_seconds"
FIRST_BATCH_AT = "first_batch_at"  # wall clock (time.time()) of the first training batch
SECONDS_PER_EPOCH = "seconds_per_epoch"
SAMPLES_PER_SECOND = "samples_per_second"
PEAK_MEMORY = "peak_memory_mb"  # MiB (2**20 bytes); the 0.1 key is kept
TEST_SCORE = "test_score"
AVERAGING = "averaging"  # average_checkpoints: {epochs, score, gain, ...} (finetune.averaging)
# freeze-thaw continuation (study.budget.rules.Continuation): each change of the planned length,
# [{"after": epoch, "epochs": new length, "rule", "reason"}], and the epochs the trial trained
CONTINUATIONS = "continuations"
EPOCHS_TRAINED = "epochs_trained"
FAIL_REASON = "fail_reason"
PRUNE_REASON = "prune_reason"
RULE = "rule"  # the trial-control rule that pruned it or kept it from starting (budget.rules)
INTERRUPTED = "interrupted"  # Ctrl-C or a stopped worker: does not count towards the total
OOM_RETRIES = "oom_retries"
OOM_NOTE = "oom_note"
WORKER = "worker"
WORKER_PID = "worker_pid"
RETRY_OF = "retry_of"  # the failed trial this one retries (a dead worker's)
WARM_START = "warm_start"  # where an enqueued warm-start configuration came from
FIRST_REPORT_SECONDS = "first_report_seconds"  # start to first report (--time-budget's estimate)
FIRST_REPORT_UNREACHED = "first_report_unreached"  # stopped before it: the seconds are a minimum
NOT_STARTED = "not_started"  # --time-budget did not let it start: does not count
REFERENCE = "reference"  # "linear_probe" or "default": an enqueued reference trial
MACRO_F1 = "macro_f1"  # the last epoch's validation macro-F1 (0.1; epoch_<n> has every metric)
TEST_MACRO_F1 = "test_macro_f1"  # 0.1's key; TEST_SCORES has every metric
TEST_SCORES = "test_scores"  # {metric: value} on the test split
CONFUSION = "confusion"  # {"val": [[...]], "test": [[...]]}: rows true, columns predicted
# {"format", "npz"}: each split's class probabilities and labels (finetune.predictions), what
# an ensemble of the study's trials is built from (finetune.ensemble); absent before 0.x
PREDICTIONS = "predictions"
# the absolute path of the trial's weights (state_dict, adapters merged) kept for a weight soup
# (space ``soup``; study.results.kept_weights); the file may since have been removed; "" when
# the trial was not among its group's best when it completed (not written)
KEPT_WEIGHTS = "kept_weights"
# The trained model's costs (autotransfer.finetune.cost), measured after training, are stored
# under each cost objective's key (autotransfer.space.objectives: latency_ms, throughput,
# params_count, size_mb, peak_memory_mb, and any registered later).
MEASURE_SECONDS = "measure_seconds"  # what measuring them took
LATENCY_THREADS = "latency_threads"  # torch's intra-op threads while latency_ms was measured
LATENCY_RUNTIME = "latency_runtime"  # what latency_ms measured: pytorch, onnxruntime fp32 / int8
VIOLATIONS = "constraint_violations"  # {name: value - bound} of the space's constraints

# Study user attributes.
STUDY_SPACE = "space"  # the search space as sorted JSON: a resumed study must use the same
STUDY_DATA = "data"
STUDY_PRESCREEN = "prescreen"
STUDY_WARM_START = "warm_start"
STUDY_KEPT_MODEL = "kept_model"
STUDY_WORKERS_JOINED = "workers_joined"
STUDY_DEADLINE = "deadline"  # --time-budget: the end of the run, time.time() seconds
STUDY_WRITE_SECONDS = "write_seconds"  # the last measured write of the results
STUDY_REFERENCES = "references"  # the kinds of the enqueued reference trials, in order
STUDY_TRANSFER_EFFECT = "transfer_effect"  # trial, val, test, scratch_val/test_score
STUDY_SELECTION = "selection"  # objectives, directions, constraints, pick (study.selection)
STUDY_COSTS = "backbone_costs"  # {backbone id: its timed step} (study.backbone_cost)
STUDY_PENDING_REFERENCES = "pending_references"  # [[kind, params]]: enqueued after the probes
STUDY_REFERENCE_UNTIL = "reference_until"  # the end of the references' share, time.time()
STUDY_RUN_STARTS = "run_starts"  # time.time() of each run of the search (best_so_far's origin)
# the data options as resolved (modality, columns read, data store): best.yaml's
# source.data_options (autotransfer.data.options; the key is data.options.DATA_OPTIONS_ATTR)
STUDY_DATA_OPTIONS = "data_options"
STUDY_RANKED = "ranked_backbones"  # {ids, rule, note}: a ranked space's expansion, kept on resume
STUDY_PRIORS = "backbone_priors"  # {labels: {label: ms}, source}: the device prior (budget.prior)
# what the data was (counts and content per split: data.fingerprint), to tell when it changed
STUDY_DATA_FINGERPRINT = "data_fingerprint"


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's training loss and validation scores: ``scores`` maps each metric computed
    (:mod:`autotransfer.space.objectives`) to its value (None where a record written by an
    older version, or by hand, lacks them)."""

    train_loss: float | None
    scores: dict[str, float] = field(default_factory=dict)
    val_loss: float | None = None  # mean cross-entropy on the validation split (nats)

    @property
    def accuracy(self) -> float | None:
        return self.scores.get("accuracy")

    @property
    def macro_f1(self) -> float | None:
        return self.scores.get("macro_f1")

    @classmethod
    def of_attr(cls, value: dict[str, Any]) -> EpochMetrics:
        """The metrics of a stored ``epoch_<n>`` mapping."""
        scores = {k: v for k, v in value.items() if k not in ("train_loss", "val_loss")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(value.get("train_loss"), scores, value.get("val_loss"))


@dataclass(frozen=True)
class TrialRecord:
    """What one trial recorded, read back from an Optuna ``FrozenTrial``.

    ``score`` is the trial's value when it completed, else its last reported (pruned) score;
    ``reason`` is why it failed or was pruned ("" otherwise). Fields a trial did not reach are
    None (a trial that failed while loading has no ``parameter_count``).
    """

    number: int
    state: str  # "complete", "pruned", "fail", "running" or "waiting"
    value: float | None
    score: float | None
    label: str  # the sampled backbone label (the id, plus "(random init)" and the like)
    sampled: dict[str, Any]  # Optuna's params: what the sampler chose
    epochs_reported: int
    backbone: str | None = None
    pretrained: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    classes: list[str] | None = None
    seed: int = 0
    parameter_count: int | None = None
    trainable_parameters: int | None = None
    n_groups: int | None = None
    n_frozen_groups: int | None = None
    epochs: dict[int, EpochMetrics] = field(default_factory=dict)
    activation_cache: str | None = None
    cache_seconds: float | None = None
    first_batch_at: float | None = None
    seconds_per_epoch: float | None = None
    samples_per_second: float | None = None
    peak_memory_mib: float | None = None
    test_score: float | None = None
    fail_reason: str | None = None
    prune_reason: str | None = None
    rule: str | None = None  # the name of the rule that gave prune_reason (study.budget.rules)
    interrupted: bool = False
    oom_retries: int = 0
    oom_note: str | None = None
    worker: str | None = None
    worker_pid: int | None = None
    retry_of: int | None = None
    warm_start: dict[str, Any] | None = None
    reference: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # the last epoch's val metrics
    test_scores: dict[str, float] = field(default_factory=dict)  # metric -> test value
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    predictions: dict[str, str] | None = field(default=None, repr=False)  # encoded (.probabilities)
    duration_seconds: float | None = None
    first_report_seconds: float | None = None
    first_report_unreached: bool = False
    not_started: bool = False
    values: tuple[float, ...] | None = None  # every objective's value (the metric's first)
    costs: dict[str, float] = field(default_factory=dict)  # cost objective name -> measured
    measure_seconds: float | None = None
    latency_threads: int | None = None  # torch's intra-op threads while latency was measured
    latency_runtime: str | None = None  # what measured it: pytorch, onnxruntime fp32 / int8
    violations: dict[str, float] = field(default_factory=dict)  # value - bound, per bound
    # each change of the planned length (a continuation, or its end by the time budget)
    continuations: list[dict[str, Any]] = field(default_factory=list)
    epochs_trained: int | None = None  # recorded when it finished
    averaging: dict[str, Any] | None = None  # what checkpoint averaging chose and bought
    kept_weights: str | None = None  # where its weights were kept for a soup (maybe removed)

    @property
    def continued(self) -> int:
        """How many times the trial's planned length grew (freeze-thaw continuations)."""
        return sum(1 for c in self.continuations if c.get("rule") == "continuation")

    @property
    def feasible(self) -> bool:
        """No constraint of the space is exceeded (a trial not measured is not known to)."""
        return not any(v > 0 for v in self.violations.values())

    @property
    def ended(self) -> str:
        """Why the trial ended before its planned length with what it had (the time budget's
        stop after a scored epoch, recorded as a plan change); "" when it did not."""
        ends = [c.get("reason") or "" for c in self.continuations
                if c.get("rule") != "continuation"]
        return ends[-1] if ends else ""

    @property
    def reason(self) -> str:
        """Why the trial failed or was pruned, or why it completed before its planned length
        (:attr:`ended`); "" when none of these."""
        return self.fail_reason or self.prune_reason or self.ended

    def probabilities(self) -> dict[str, tuple[Any, Any]]:
        """``{split: (class probabilities (N, C) float32, labels (N,))}`` the trained model
        gave (:mod:`autotransfer.finetune.predictions`); ``{}`` when the trial kept none (not
        completed, or recorded before predictions were kept).

        Raises:
            ValueError: the stored predictions cannot be read (one line naming the trial).
        """
        if not self.predictions:
            return {}

        try:
            return decode(self.predictions)
        except ValueError as exc:
            raise ValueError(f"trial {self.number}: {exc}") from None

    @classmethod
    def from_frozen(cls, trial) -> TrialRecord:
        """The record of an Optuna ``FrozenTrial`` (any state), or of a running
        ``optuna.Trial`` so far (state ``running``; it exposes no values or reported steps)."""
        attrs = trial.user_attrs
        state = trial.state.name.lower() if hasattr(trial, "state") else "running"
        steps = getattr(trial, "intermediate_values", {})
        values = getattr(trial, "values", None)
        duration = getattr(trial, "duration", None)
        last = steps[max(steps)] if steps else None
        epochs = {}
        for key, value in attrs.items():
            if (key.startswith(EPOCH_PREFIX) and key[len(EPOCH_PREFIX):].isdigit()
                    and isinstance(value, dict)):
                epochs[int(key[len(EPOCH_PREFIX):])] = EpochMetrics.of_attr(value)
        return cls(
            number=trial.number,
            state=state,
            value=values[0] if values else None,
            score=values[0] if state == "complete" and values else last,
            label=trial.params.get("backbone", attrs.get(BACKBONE, "?")),
            sampled=dict(trial.params),
            # a multi-objective trial reports no intermediate value (Optuna cannot prune it)
            # but records each epoch it trained
            epochs_reported=max(len(steps), len(epochs)),
            backbone=attrs.get(BACKBONE),
            pretrained=bool(attrs.get(PRETRAINED, True)),
            params=dict(attrs.get(PARAMS) or {}),
            device=attrs.get(DEVICE),
            classes=attrs.get(CLASSES),
            seed=attrs.get(SEED, 0),
            parameter_count=attrs.get(PARAMETER_COUNT),
            trainable_parameters=attrs.get(TRAINABLE_PARAMETERS),
            n_groups=attrs.get(N_GROUPS),
            n_frozen_groups=attrs.get(N_FROZEN_GROUPS),
            epochs=dict(sorted(epochs.items())),
            activation_cache=attrs.get(ACTIVATION_CACHE),
            cache_seconds=attrs.get(CACHE_SECONDS),
            first_batch_at=attrs.get(FIRST_BATCH_AT),
            seconds_per_epoch=attrs.get(SECONDS_PER_EPOCH),
            samples_per_second=attrs.get(SAMPLES_PER_SECOND),
            peak_memory_mib=attrs.get(PEAK_MEMORY),
            test_score=attrs.get(TEST_SCORE),
            fail_reason=attrs.get(FAIL_REASON),
            prune_reason=attrs.get(PRUNE_REASON),
            rule=attrs.get(RULE),
            interrupted=bool(attrs.get(INTERRUPTED, False)),
            oom_retries=int(attrs.get(OOM_RETRIES, 0)),
            oom_note=attrs.get(OOM_NOTE),
            worker=attrs.get(WORKER),
            worker_pid=attrs.get(WORKER_PID),
            retry_of=attrs.get(RETRY_OF),
            warm_start=attrs.get(WARM_START),
            reference=attrs.get(REFERENCE),
            scores=_last_scores(epochs, attrs),
            test_scores=_test_scores(attrs),
            confusion=dict(attrs.get(CONFUSION) or {}),
            predictions=attrs.get(PREDICTIONS),
            duration_seconds=duration.total_seconds() if duration else None,
            first_report_seconds=attrs.get(FIRST_REPORT_SECONDS),
            first_report_unreached=bool(attrs.get(FIRST_REPORT_UNREACHED, False)),
            not_started=bool(attrs.get(NOT_STARTED, False)),
            values=tuple(values) if values else None,
            costs=costs_of(attrs),
            measure_seconds=attrs.get(MEASURE_SECONDS),
            latency_threads=attrs.get(LATENCY_THREADS),
            latency_runtime=attrs.get(LATENCY_RUNTIME),
            violations=dict(attrs.get(VIOLATIONS) or {}),
            continuations=list(attrs.get(CONTINUATIONS) or []),
            epochs_trained=attrs.get(EPOCHS_TRAINED),
            averaging=attrs.get(AVERAGING) or None,
            kept_weights=attrs.get(KEPT_WEIGHTS),
        )


def _last_scores(epochs: dict[int, EpochMetrics], attrs: dict[str, Any]) -> dict[str, float]:
    """The last recorded epoch's metrics (a 0.1 record without epochs: its ``macro_f1``)."""
    scores = dict(epochs[max(epochs)].scores) if epochs else {}
    if MACRO_F1 in attrs and "macro_f1" not in scores:
        scores["macro_f1"] = attrs[MACRO_F1]
    return scores


def _test_scores(attrs: dict[str, Any]) -> dict[str, float]:
    scores = dict(attrs.get(TEST_SCORES) or {})
    if TEST_MACRO_F1 in attrs and "macro_f1" not in scores:  # a 0.1 record
        scores["macro_f1"] = attrs[TEST_MACRO_F1]
    return scores


def costs_of(attrs: dict[str, Any]) -> dict[str, float]:
    """``{cost objective name: value}`` of the costs a trial's attributes record (each under
    its objective's ``key``, :mod:`autotransfer.space.objectives`)."""
    return {o.name: attrs[o.key] for o in objectives("cost") if attrs.get(o.key) is not None}


def reference_of(trial) -> str | None:
    """The reference kind of a trial, running (an ``optuna.Trial``, whose record cannot be read
    whole yet) or frozen: ``"linear_probe"``, ``"default"``, a method's name, or None."""
    return trial.user_attrs.get(REFERENCE)


#: what the console and the docs call a reference kind (the stored kind ``default`` is the
#: first fine-tune: :mod:`autotransfer.space.first_finetune`; databases keep the name)
REFERENCE_NAMES = {"linear_probe": "linear probe", "default": "first fine-tune"}


def reference_name(kind: str) -> str:
    """What the console calls reference ``kind``: ``"first fine-tune"`` for ``"default"``,
    ``"linear probe"``, or a method's name (``"lora"``)."""
    return REFERENCE_NAMES.get(kind, kind.replace("_", " "))


def trial_records(study, states: tuple[str, ...] | None = None) -> list[TrialRecord]:
    """The records of the study's trials (of ``states``, e.g. ``("complete",)``), by number."""
    records = [TrialRecord.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    return [r for r in records if states is None or r.state in states]


class TrialWriter:
    """The one writer of a running trial's user attributes (wraps an ``optuna.Trial``)."""

    def __init__(self, trial) -> None:
        self.trial = trial

    def _set(self, key: str, value: Any) -> None:
        self.trial.set_user_attr(key, value)

    def worker(self, name: str, pid: int, retry_of: int | None) -> None:
        """Which worker runs the trial; a retry of a dead worker's trial says which."""
        self._set(WORKER, name)
        self._set(WORKER_PID, pid)
        if retry_of is not None:  # a copy of the dead trial, with its user attrs
            self._set(RETRY_OF, retry_of)
            if self.trial.user_attrs.get(INTERRUPTED):
                self._set(INTERRUPTED, False)
            if self.trial.user_attrs.get(FAIL_REASON):  # why the dead worker's copy failed
                self._set(FAIL_REASON, "")

    def started(self, *, backbone: str, pretrained: bool, params: dict[str, Any], device: str,
                classes: list[str], seed: int) -> None:
        """What the trial trains: the backbone, every hyperparameter, device, classes, seed."""
        self._set(BACKBONE, backbone)
        self._set(PRETRAINED, pretrained)
        self._set(PARAMS, params)
        self._set(DEVICE, device)
        self._set(CLASSES, classes)
        self._set(SEED, seed)

    def retried_out_of_memory(self, params: dict[str, Any], failed_batch_size: int) -> int:
        """An out-of-memory retry at ``params["batch_size"]``; returns the retry count."""
        retries = int(self.trial.user_attrs.get(OOM_RETRIES, 0)) + 1
        self._set(PARAMS, params)
        self._set(OOM_RETRIES, retries)
        self._set(OOM_NOTE, f"out of memory at batch size {failed_batch_size}; retried at "
                            f"{params['batch_size']}")
        return retries

    def loaded(self, parameter_count: int) -> None:
        """The backbone's parameter count (all parameters, frozen or not)."""
        self._set(PARAMETER_COUNT, parameter_count)

    def epoch(self, number: int, metrics: EpochMetrics, *, activation_cache: str,
              cache_seconds: float, seconds_per_epoch: float, samples_per_second: float,
              peak_memory_mib: float, first_batch_at: float | None = None) -> None:
        """One epoch's scores, and the running throughput, cache and memory figures."""
        self._set(ACTIVATION_CACHE, activation_cache)
        self._set(FIRST_BATCH_AT, first_batch_at)
        self._set(CACHE_SECONDS, round(cache_seconds, 3))
        self._set(SECONDS_PER_EPOCH, round(seconds_per_epoch, 3))
        self._set(SAMPLES_PER_SECOND, round(samples_per_second, 1))
        self._set(PEAK_MEMORY, round(peak_memory_mib, 1))
        self._set(f"{EPOCH_PREFIX}{number}", {
            "train_loss": round(metrics.train_loss, 5),
            **{name: round(value, 5) for name, value in metrics.scores.items()},
            **({} if metrics.val_loss is None or math.isnan(metrics.val_loss)
               else {"val_loss": round(metrics.val_loss, 5)}),
        })
        if metrics.macro_f1 is not None:  # 0.1's key, kept for its readers
            self._set(MACRO_F1, round(metrics.macro_f1, 5))

    def finished(self, *, n_groups: int, n_frozen_groups: int, trainable_parameters: int,
                 test_score: float | None, epochs_trained: int | None = None) -> None:
        """The trained model's shape (groups, frozen groups, trainable count), test score and
        the epochs it trained (continuations included)."""
        if epochs_trained is not None:
            self._set(EPOCHS_TRAINED, epochs_trained)
        self._set(N_GROUPS, n_groups)
        self._set(N_FROZEN_GROUPS, n_frozen_groups)
        self._set(TRAINABLE_PARAMETERS, trainable_parameters)
        if test_score is not None:
            self._set(TEST_SCORE, test_score)

    def averaged(self, averaging: dict[str, Any]) -> None:
        """What checkpoint averaging chose (``epochs``) and bought (``gain`` over the last
        epoch, ``gain_over_best_epoch``); see :mod:`autotransfer.finetune.averaging`."""
        self._set(AVERAGING, averaging)

    def kept_weights(self, path: str) -> None:
        """Where the trained model's weights were kept for a weight soup (an absolute path;
        ``""``: considered and not kept; :mod:`autotransfer.study.results.kept_weights`)."""
        self._set(KEPT_WEIGHTS, path)

    def scored(self, confusion: dict[str, list[list[int]]],
               test_scores: dict[str, float] | None) -> None:
        """The trained model's confusion matrices (per split) and its test metrics."""
        self._set(CONFUSION, confusion)
        if test_scores:
            self._set(TEST_SCORES, {k: round(v, 5) for k, v in test_scores.items()})
            if "macro_f1" in test_scores:  # 0.1's key, kept for its readers
                self._set(TEST_MACRO_F1, round(test_scores["macro_f1"], 5))

    def predicted(self, splits: dict[str, tuple[Any, Any]]) -> int:
        """Each split's class probabilities ``(N, C)`` and labels ``(N,)``, compressed
        (:func:`autotransfer.finetune.predictions.encode`); returns the characters stored, 0
        when over :data:`~autotransfer.finetune.predictions.LIMIT_CHARS` (then not kept)."""
        stored = encode(splits)
        if len(stored["npz"]) > LIMIT_CHARS:
            return 0
        self._set(PREDICTIONS, stored)
        return len(stored["npz"])

    def measured(self, cost: dict[str, float], seconds: float) -> None:
        """The trained model's costs (:func:`autotransfer.finetune.cost.measure_cost`: each
        registered cost's ``key`` found in ``cost``, ``latency_threads`` and
        ``latency_runtime``) and the seconds the measurement took."""
        for key in (*(o.key for o in objectives("cost")), LATENCY_THREADS, LATENCY_RUNTIME):
            if key in cost:
                self._set(key, cost[key])
        self._set(MEASURE_SECONDS, round(seconds, 3))

    def violations(self, violations: dict[str, float]) -> None:
        """``{constraint: value - bound}`` (feasible where <= 0), also as Optuna constraints
        (``Trial.set_constraint``), which the TPE, NSGA-II and GP samplers learn from."""
        self._set(VIOLATIONS, violations)
        for name, value in violations.items():
            self.trial.set_constraint(name, value)

    def replanned(self, *, after: int, epochs: int, reason: str, rule: str) -> None:
        """The trial's planned length changed after epoch ``after`` to ``epochs`` (a
        continuation, or its end), by the trial-control ``rule``, for ``reason``."""
        done = list(self.trial.user_attrs.get(CONTINUATIONS) or [])
        self._set(CONTINUATIONS, [*done, {"after": after, "epochs": epochs, "rule": rule,
                                          "reason": reason}])

    def pruned(self, reason: str, *, rule: str | None = None) -> None:
        """Why the trial was pruned, and the name of the trial-control ``rule`` that said so."""
        self._set(PRUNE_REASON, reason)
        if rule is not None:
            self._set(RULE, rule)

    def first_report(self, seconds: float, *, reached: bool = True) -> None:
        """Seconds from the trial's start to its first report; when it was stopped before
        one (``reached=False``), the seconds it ran: a lower bound."""
        self._set(FIRST_REPORT_SECONDS, round(seconds, 3))
        if not reached:
            self._set(FIRST_REPORT_UNREACHED, True)

    def not_started(self, reason: str, *, rule: str | None = None) -> None:
        """A start ``rule`` did not let the trial start; it does not count towards the total."""
        self._set(NOT_STARTED, True)
        self._set(PRUNE_REASON, reason)
        if rule is not None:
            self._set(RULE, rule)

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        """Why the trial failed; an interrupted one does not count towards the total."""
        self._set(FAIL_REASON, reason)
        if interrupted:
            self._set(INTERRUPTED, True)


def warm_start_attrs(source: dict[str, Any]) -> dict[str, Any]:
    """The user attributes of an enqueued warm-start trial (``study.enqueue_trial``)."""
    return {WARM_START: source}


def reference_attrs(kind: str) -> dict[str, Any]:
    """The user attributes of an enqueued reference trial (``study.enqueue_trial``)."""
    return {REFERENCE: kind}


@dataclass(frozen=True)
class StudyRecord:
    """What the study recorded about itself, read back from ``study.user_attrs``."""

    space: str | None = None  # the space's fingerprint (sorted JSON)
    data: str | None = None
    prescreen: dict[str, Any] | None = None  # by, k, samples, kept, scores
    warm_start: list[dict[str, Any]] | None = None  # study, trial, value of each enqueued one
    kept_model: dict[str, Any] | None = None  # trial, score, artifact (--keep-best)
    workers_joined: int = 0
    deadline: float | None = None  # --time-budget's end of the run (time.time() seconds)
    write_seconds: float | None = None
    references: list[str] | None = None  # None: not enqueued yet
    transfer_effect: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None  # None: one maximised metric (older studies)
    costs: dict[str, dict[str, Any]] | None = None  # None: not measured (study.backbone_cost)
    pending_references: list[list[Any]] | None = None  # [kind, params] held for the probes
    reference_until: float | None = None  # the references' share ends (study.reference_share)
    run_starts: list[float] | None = None  # each run of the search began (time.time())
    data_options: dict[str, Any] | None = None  # DataOptions.to_yaml() of what was read
    ranked: dict[str, Any] | None = None  # a ranked space's ids (study.ranked); None: a list
    priors: dict[str, Any] | None = None  # the backbones' prior latencies (budget.prior)
    data_fingerprint: dict[str, Any] | None = None  # None: begun before fingerprints

    @classmethod
    def of(cls, study) -> StudyRecord:
        attrs = study.user_attrs
        return cls(
            space=attrs.get(STUDY_SPACE),
            data=attrs.get(STUDY_DATA),
            prescreen=attrs.get(STUDY_PRESCREEN),
            warm_start=attrs.get(STUDY_WARM_START),
            kept_model=attrs.get(STUDY_KEPT_MODEL),
            workers_joined=int(attrs.get(STUDY_WORKERS_JOINED, 0)),
            deadline=attrs.get(STUDY_DEADLINE),
            write_seconds=attrs.get(STUDY_WRITE_SECONDS),
            references=attrs.get(STUDY_REFERENCES),
            transfer_effect=attrs.get(STUDY_TRANSFER_EFFECT),
            selection=attrs.get(STUDY_SELECTION),
            costs=attrs.get(STUDY_COSTS),
            pending_references=attrs.get(STUDY_PENDING_REFERENCES),
            reference_until=attrs.get(STUDY_REFERENCE_UNTIL),
            run_starts=attrs.get(STUDY_RUN_STARTS),
            data_options=attrs.get(STUDY_DATA_OPTIONS),
            ranked=attrs.get(STUDY_RANKED),
            priors=attrs.get(STUDY_PRIORS),
            data_fingerprint=attrs.get(STUDY_DATA_FINGERPRINT),
        )


def set_study_origin(study, space_fingerprint: str, data: str) -> None:
    """The space and data a new study was created with."""
    study.set_user_attr(STUDY_SPACE, space_fingerprint)
    study.set_user_attr(STUDY_DATA, data)


def set_data_fingerprint(study, fingerprint: dict[str, Any]) -> None:
    """What the study's data was (:func:`autotransfer.data.fingerprint.data_fingerprint`)."""
    study.set_user_attr(STUDY_DATA_FINGERPRINT, fingerprint)


def set_ranked(study, ranked: dict[str, Any]) -> None:
    """The ids a ranked space expanded into (``study.ranked``): a resume uses the same."""
    study.set_user_attr(STUDY_RANKED, ranked)


def set_priors(study, priors: dict[str, Any]) -> None:
    """The backbones' prior latencies (``budget.prior.study_priors``): a resume and every
    worker draw with the same."""
    study.set_user_attr(STUDY_PRIORS, priors)


def set_selection(study, selection: dict[str, Any]) -> None:
    """How the study picks its best trial (:func:`autotransfer.study.selection.rule_of`)."""
    study.set_user_attr(STUDY_SELECTION, selection)


def set_data_options(study, options: dict[str, Any]) -> None:
    """The data options the search resolved (``DataOptions.resolved(...).to_yaml()``)."""
    study.set_user_attr(STUDY_DATA_OPTIONS, options)


def set_prescreen(study, prescreen: dict[str, Any]) -> None:
    study.set_user_attr(STUDY_PRESCREEN, prescreen)


def set_warm_start(study, enqueued: list[dict[str, Any]]) -> None:
    study.set_user_attr(STUDY_WARM_START, enqueued)


def set_references(study, kinds: list[str]) -> None:
    study.set_user_attr(STUDY_REFERENCES, kinds)


def set_costs(study, costs: dict[str, dict[str, Any]]) -> None:
    study.set_user_attr(STUDY_COSTS, costs)


def set_pending_references(study, pending: list[list[Any]]) -> None:
    study.set_user_attr(STUDY_PENDING_REFERENCES, pending)


def set_reference_until(study, at: float | None) -> None:
    study.set_user_attr(STUDY_REFERENCE_UNTIL, at)


def set_transfer_effect(study, effect: dict[str, Any]) -> None:
    study.set_user_attr(STUDY_TRANSFER_EFFECT, effect)


def set_kept_model(study, kept: dict[str, Any]) -> None:
    study.set_user_attr(STUDY_KEPT_MODEL, kept)


def add_run_start(study, at: float) -> None:
    """A run of the search (the first, or a resume) began at ``at`` (time.time())."""
    study.set_user_attr(STUDY_RUN_STARTS, [*(study.user_attrs.get(STUDY_RUN_STARTS) or []), at])


def set_deadline(study, at: float) -> None:
    study.set_user_attr(STUDY_DEADLINE, at)


def set_write_seconds(study, seconds: float) -> None:
    study.set_user_attr(STUDY_WRITE_SECONDS, round(seconds, 3))


def next_worker_number(study) -> int:
    """Count this worker in (call under the study lock); returns its number, 0 for the first."""
    number = StudyRecord.of(study).workers_joined
    study.set_user_attr(STUDY_WORKERS_JOINED, number + 1)
    return number
