"""autotransfer.finetune.cost: the timed passes stay inside their limit on a busy machine."""

import time

import pytest
import torch

from autotransfer.finetune.cost import BLOCK, MIN_BLOCKS, WARMUP, time_blocks
from autotransfer.study.selection import Rule


class SlowPass(torch.nn.Module):
    """A forward pass of at least ``seconds`` (a busy machine's), counted."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.calls = seconds, 0

    def forward(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        return x


def test_without_a_limit_the_minimum_blocks_are_timed_after_the_warm_up():
    model = SlowPass(0.001)
    blocks = time_blocks(model, torch.zeros(1), torch.device("cpu"), budget_s=0.0)
    assert len(blocks) == MIN_BLOCKS and model.calls == WARMUP + MIN_BLOCKS * BLOCK


def test_past_its_limit_no_pass_starts_once_one_is_timed():
    """Each pass outlasts the limit: one warm-up pass and one timed pass, where the minimum
    blocks would take 13 passes."""
    model = SlowPass(0.05)
    blocks = time_blocks(model, torch.zeros(1), torch.device("cpu"), budget_s=10.0,
                         limit_s=0.04)
    assert model.calls == 2 and blocks == [[blocks[0][0]]] and blocks[0][0] >= 0.05


def test_untimed_the_costs_leave_out_latency_and_say_why():
    from autotransfer.finetune.cost import measure_cost

    model = SlowPass(0.0)
    cost = measure_cost(model, None, None, device=torch.device("cpu"), batch_size=4,
                        timed=False)
    assert model.calls == 0 and "latency_ms" not in cost and "throughput" not in cost
    assert cost["latency_runtime"] == "not timed: the time budget was spent"
    assert cost["params_count"] == 0 and cost["size_mb"] == 0


class Spent:
    """A time budget's deadline that is spent."""

    def left(self) -> float:
        return -1.0


@pytest.mark.parametrize(("rule", "timed"), [
    (Rule(), False),
    (Rule(("score", "latency_ms")), True),
    (Rule(constraints={"throughput": 10.0}), True),
    (Rule(constraints={"params": 1e6}), False),
])
def test_a_spent_budget_times_no_pass_unless_the_study_needs_latency(monkeypatch, rule, timed):
    import optuna

    from autotransfer.finetune import cost as cost_module
    from autotransfer.study.budget.measure import measure_trial

    seen = {}

    def measure_cost(*args, **kwargs):
        seen.update(kwargs)
        return {"params_count": 0}

    monkeypatch.setattr(cost_module, "measure_cost", measure_cost)
    trial = optuna.create_study().ask()
    trainer = type("T", (), {"model": None, "preprocess": None, "data": None,
                             "device": torch.device("cpu"), "inference_batch_size": 4})()
    measure_trial(trial, trainer, rule, started_at=0.0, deadline=Spent())
    assert seen["timed"] is timed and seen["budget_s"] == 0.0
