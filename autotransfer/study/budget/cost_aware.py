"""Cost-aware starts: among backbones of similar promise, the cheaper one starts first.

The first :data:`EARLY_TRIALS` sampled trials of a study (the TPE sampler's random start-up
trials, before it has a model) draw their backbone from those whose promise is similar to the
best's, each with a probability proportional to the inverse of its measured seconds per epoch
(:mod:`autotransfer.study.budget.backbone_cost`): the cheaper backbone is drawn more often, and none
of similar promise is left out. A backbone's promise is the best score of its completed trials
so far (its linear probe, its default configuration); similar means within two standard
errors of the best one's (``2 * sqrt(p * (1 - p) / n_val)``, the binomial error of an accuracy
``p`` over the ``n_val`` validation examples); a backbone without a score yet is of similar
promise. A backbone the timed step has not measured (its step failed, or the step was skipped
because the device-aware prior covers every backbone: :mod:`autotransfer.study.budget.prior`,
``warm_start.costs_wanted``) is weighed by its prior latency, scaled by the median ratio of
measured seconds to prior of the measured ones (the prior alone, relative, when none is
measured). After the early trials the sampler chooses alone. Every other hyperparameter is the
wrapped sampler's. Quick-Tune (Arango et al., ICLR 2024) lets a cost predictor decide what
to start; this is the cheapest form of that idea.

The space's ``budget.cost_aware: false`` leaves the sampler as it is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler

from autotransfer.study.budget.backbone_cost import epoch_seconds, recorded

EARLY_TRIALS = 5  # TPE's start-up trials (autotransfer.space.strategies)


def backbone_weights(study, space, *, before: int, prior: dict[str, float] | None = None
                     ) -> dict[str, float]:
    """The draw's weight of each backbone label: 1 / seconds per epoch among those of similar
    promise (0 for the others), from the study's trials numbered below ``before``; ``prior``
    (``{label: prior latency in ms}``) stands in for a backbone that was not measured."""
    from optuna.trial import TrialState

    best: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number < before and t.values and "backbone" in t.params:
            label = t.params["backbone"]
            best[label] = max(best.get(label, -math.inf), float(t.values[0]))
    costs = recorded(study)
    top = max(best.values(), default=None)
    n_val = next((c["n_val"] for c in costs.values() if c.get("n_val")), None)
    margin = 0.0 if top is None or not n_val else 2 * math.sqrt(
        max(0.0, min(1.0, top)) * (1 - max(0.0, min(1.0, top))) / n_val)
    params = space.resolve({})
    seconds = {b.label: epoch_seconds(costs[b.id], params) for b in space.backbones
               if b.id in costs}
    seconds.update(from_prior(seconds, prior or {}))
    typical = float(np.median(list(seconds.values()))) if seconds else 1.0
    weights = {}
    for b in space.backbones:
        similar = top is None or b.label not in best or best[b.label] >= top - margin - 1e-12
        weights[b.label] = (1.0 / max(seconds.get(b.label, typical), 1e-9)) if similar else 0.0
    return weights


def from_prior(seconds: dict[str, float], prior: dict[str, float]) -> dict[str, float]:
    """Seconds per epoch of the labels in ``prior`` but not in ``seconds``: the prior times the
    median ``seconds / prior`` of the labels in both (times 1 when none is: the weights are
    relative)."""
    both = [seconds[k] / prior[k] for k in seconds if prior.get(k, 0) > 0]
    scale = float(np.median(both)) if both else 1.0
    return {k: v * scale for k, v in prior.items() if k not in seconds and v > 0}


def wrap(sampler, space, seed: int, prior=None):
    """``sampler`` drawing the backbone of the early sampled trials cost-aware (see the
    module docstring); ``sampler`` itself when ``budget.cost_aware`` is off or the space has
    one backbone. ``prior``: a callable returning ``{label: prior latency in ms}``, called at
    the first early draw (None: no prior)."""
    if not space.budget.cost_aware or len(space.backbones) < 2:
        return sampler
    return CostAwareSampler(sampler, space, seed, prior)


def whole_study(study):
    """The study itself: under Hyperband, optuna hands samplers a per-bracket view
    (``optuna.pruners._filter_study``) that hides the user attributes the costs live in and the
    other brackets' trials."""
    return getattr(study, "_study", study)


def _sampled_before(study, number: int) -> int:
    """Trials before ``number`` that the sampler chose (not enqueued ones)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and "fixed_params" not in t.system_attrs)


class DelegatingSampler(BaseSampler):
    """A sampler that hands every call to ``base``; a subclass changes how the backbone is
    drawn (:class:`CostAwareSampler`, ``infeasible.ExcludeInfeasible``)."""

    def __init__(self, base: BaseSampler) -> None:
        self.base = base

    def infer_relative_search_space(self, study, trial):
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name: str, param_distribution: Any):
        return self.base.sample_independent(study, trial, param_name, param_distribution)


class CostAwareSampler(DelegatingSampler):
    """Delegates to ``base``; draws the early sampled trials' backbone cost-aware."""

    def __init__(self, base: BaseSampler, space, seed: int, prior=None) -> None:
        super().__init__(base)
        self.space, self.seed = space, seed
        self._prior_of, self._prior = prior, None

    def prior(self) -> dict[str, float]:
        """The backbones' prior latencies (once; ``{}`` when none is given or it fails: a
        prior never stops a search)."""
        if self._prior is None:
            try:
                self._prior = self._prior_of() if self._prior_of is not None else {}
            except Exception:  # noqa: BLE001 - the draw falls back on the median cost
                self._prior = {}
        return self._prior

    def infer_relative_search_space(self, study, trial):
        found = self.base.infer_relative_search_space(study, trial)
        if "backbone" in found and _sampled_before(whole_study(study), trial.number) < EARLY_TRIALS:
            # an early trial's backbone is drawn by sample_independent below, even once a
            # multivariate sampler samples the rest jointly (its start-up may end earlier:
            # trials a time budget did not start count as pruned ones for TPE)
            found = {k: v for k, v in found.items() if k != "backbone"}
        return found

    def sample_independent(self, study, trial, param_name: str, param_distribution: Any):
        whole = whole_study(study)
        if param_name == "backbone" and _sampled_before(whole, trial.number) < EARLY_TRIALS:
            weights = backbone_weights(whole, self.space, before=trial.number,
                                       prior=self.prior())
            labels = [c for c in param_distribution.choices if weights.get(c, 0.0) > 0]
            if labels:
                p = np.array([weights[c] for c in labels])
                rng = np.random.default_rng([self.seed, trial.number])
                return labels[int(rng.choice(len(labels), p=p / p.sum()))]
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
