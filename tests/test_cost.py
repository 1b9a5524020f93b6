"""autotransfer.finetune.cost: the timed passes stay inside their limit on a busy machine."""

import time

import torch

from autotransfer.finetune.cost import BLOCK, MIN_BLOCKS, WARMUP, time_blocks


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
