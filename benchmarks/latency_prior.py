"""How good the device-aware prior is (#39 item 3): prior against measured latency at batch 1.

For each image backbone, the prior (:mod:`autotransfer.study.budget.prior`: on the CPU, the
published i7-12700H row scaled by this CPU's slowdown on a random-weight
``mobilenetv3_large_100``) and the GMACs model (published GMACs x ms per GMAC timed on the same
reference; the prior's fallback) are compared with the measured latency of the backbone
itself: batch 1 at its published input size, eager PyTorch on the CPU,
``torch.set_num_threads(1)`` (the machine is shared), timed as a trial's ``latency_ms`` is
(the median pass of the quietest block, ``--budget`` seconds per backbone). The packaged image
backbones are loaded from their pip packages (their real weights); ``--extra`` adds timm
architectures built with random weights (latency does not depend on the weights), to test the
model on dense CNNs and a ViT as well.

Printed: one Markdown row per backbone (GMACs at the row's size, each model's ms, measured ms,
measured / model), and per model Spearman's rho (``scipy.stats.spearmanr``) against the
measured latency and the geometric mean and range of measured / model. The load average
(``os.getloadavg``) is printed before and after.

    HF_HUB_OFFLINE=1 python benchmarks/latency_prior.py [--extra] [--budget 2]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import numpy as np
import torch
from scipy.stats import spearmanr

from autotransfer.contract.collect import get_registry
from autotransfer.study.budget import prior

PACKAGED = ["packaged/mobilenetv2_100", "packaged/tf_efficientnet_lite0",
            "packaged/tf_efficientnet_lite1", "packaged/tf_efficientnet_lite2"]
EXTRA = ["timm/mobilenetv3_small_100", "timm/efficientnet_b0", "timm/regnetx_002",
         "timm/resnet18", "timm/resnet50", "timm/convnext_atto", "timm/vit_tiny_patch16_224"]


def measure(model: torch.nn.Module, size: int, budget_s: float) -> float:
    """ms of one pass at batch 1, timed as a trial's ``latency_ms`` is
    (:func:`autotransfer.finetune.cost.latency_seconds`: the quietest block's median pass)."""
    from autotransfer.finetune.cost import latency_seconds

    x = torch.randn(1, 3, size, size)
    return 1000 * latency_seconds(model, x, torch.device("cpu"), budget_s=budget_s,
                                  limit_s=4 * budget_s)


def load(backbone_id: str) -> torch.nn.Module:
    if backbone_id.startswith("packaged/"):
        return get_registry().get(backbone_id).load().model.eval()
    import timm

    return timm.create_model(backbone_id.removeprefix("timm/"), pretrained=False,
                             num_classes=0).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="store_true", help="add random-weight timm models")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per backbone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()}; torch threads: {torch.get_num_threads()}")
    constants = [prior._measure.__wrapped__("cpu", 1, prior.REFERENCE_SECONDS)  # type: ignore
                 for _ in range(3)]
    print("reference ms, three timings: "
          + ", ".join(f"{c.reference_ms:.1f}" for c in constants))
    constant = prior.device_constant("cpu")
    print(f"constant used: {prior.describe(constant)}")
    rows = []
    for backbone_id in PACKAGED + (EXTRA if args.extra else []):
        entry = prior.find_entry(backbone_id, "image")
        row_model = prior.prior_of(entry, constant)  # the prior: the CPU row, scaled
        gmacs_model = prior.prior_of(replace(entry, throughput={}, throughput_source={}),
                                     constant)
        size = entry.input_size or entry.gmacs_size
        measured = measure(load(backbone_id), size, args.budget)
        rows.append((backbone_id, size, f"{entry.gmacs} @{entry.gmacs_size}",
                     row_model.latency_ms, gmacs_model.latency_ms, measured))
    print("\n| backbone | size | GMACs @ row size | prior ms (CPU row) | GMACs model ms | "
          "measured ms | measured / prior | measured / GMACs model |")
    print("|---|---|---|---|---|---|---|---|")
    for bid, size, gmacs, r_ms, g_ms, m_ms in rows:
        print(f"| {bid} | {size} | {gmacs} | {r_ms:.1f} | {g_ms:.1f} | {m_ms:.1f} | "
              f"{m_ms / r_ms:.2f} | {m_ms / g_ms:.2f} |")
    for name, subset in (("packaged", rows[:len(PACKAGED)]), ("all", rows)):
        if name == "all" and not args.extra:
            continue
        m_ms = np.array([r[5] for r in subset])
        parts = []
        for model, column in (("prior (CPU row)", 3), ("GMACs model", 4)):
            p_ms = np.array([r[column] for r in subset])
            ratio = m_ms / p_ms
            parts.append(f"{model}: Spearman rho {spearmanr(p_ms, m_ms).statistic:.2f}, "
                         f"measured/model geometric mean {np.exp(np.log(ratio).mean()):.2f} "
                         f"(range {ratio.min():.2f}-{ratio.max():.2f})")
        print(f"{name} ({len(subset)}): " + "; ".join(parts))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
