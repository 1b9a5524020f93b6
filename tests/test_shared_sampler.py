"""Workers that share a study get TPE's constant liar: concurrent trials get different
configurations (optuna#1547: 20 workers proposing the same parameters)."""

import optuna

from autotransfer.space.schema import parse_space
from autotransfer.study.budget.pruners import liar_sees_multivariate, make_sampler

SPACE = {
    "backbones": [{"id": "timm/test_efficientnet", "pretrained": False}],
    "epochs": 1,
    "params": {"lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
               "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True}},
}


def _concurrent_suggestions(shared: bool, sampler=None) -> list[tuple]:
    """Ten finished trials, then four trials asked while none has finished, each by a sampler
    in the same state (the same seed: workers started alike on one history)."""
    space = parse_space({**SPACE, "sampler": sampler} if sampler else SPACE)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for _ in range(10):
        trial = study.ask()
        study.tell(trial, -abs(trial.suggest_float("lr", 1e-4, 1e-1, log=True) - 1e-2)
                   - trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True))
    running = []
    for _ in range(4):
        study.sampler = make_sampler(space, seed=7, shared=shared)
        trial = study.ask()
        running.append((trial.suggest_float("lr", 1e-4, 1e-1, log=True),
                        trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)))
    assert len(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))) == 4
    return running


def test_shared_workers_get_four_different_configurations():
    assert len(set(_concurrent_suggestions(shared=True))) == 4


def test_the_liar_is_what_makes_them_differ():
    # the control: a space that turns the liar off gets the same suggestion four times
    liar_off = {"type": "tpe", "constant_liar": False}
    assert len(set(_concurrent_suggestions(shared=True, sampler=liar_off))) == 1


def test_shared_tpe_keeps_multivariate_only_where_the_liar_covers_it():
    sampler = make_sampler(parse_space(SPACE), seed=0, shared=True)
    assert sampler._constant_liar
    assert sampler._multivariate == liar_sees_multivariate()
