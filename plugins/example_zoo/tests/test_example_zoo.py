"""The example plugin's own tests: what a plugin author writes with autotransfer.testing."""

import os
import subprocess
import sys

import torch

from autotransfer.plugin import get_backbone
from autotransfer.testing import check_backbone

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_mobilenet_v2_passes_the_conformance_check_with_real_weights():
    report = check_backbone("torchvision/mobilenet_v2", pretrained=True)
    assert report.dim == 1280 and report.n_groups == 18 and report.n_head_params == 0


def test_pretrained_weights_are_the_imagenet_checkpoint():
    pretrained = get_backbone("torchvision/mobilenet_v2").load()
    scratch = get_backbone("torchvision/mobilenet_v2").load(pretrained=False)
    stem = pretrained.model.features[0][0].weight
    assert not torch.allclose(stem, scratch.model.features[0][0].weight)
    assert abs(stem.std().item() - 0.0) > 0.05  # trained filters, not an init distribution


def test_the_entry_point_makes_it_visible_to_the_cli():
    out = subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()",
         "backbones", "torchvision/"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "AUTOTRANSFER_TCMALLOC": "0"},
    )
    assert out.stdout.startswith("torchvision/mobilenet_v2\timage")
    plugins = subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", "plugins"],
        capture_output=True, text=True, check=True,
    )
    assert "example_zoo" in plugins.stdout and "0.1.0" in plugins.stdout
