"""Make the figures of docs/concepts.md from real runs; the PNGs beside this file are its output.

    python docs/figures/make_figures.py            # both figures (the study takes minutes)
    python docs/figures/make_figures.py groups     # only the layer-group figure (seconds)

- ``layer-groups.png``: the layer groups of the packaged MobileNetV2 (real ImageNet weights),
  which are frozen and each group's learning rate, for three settings of ``freeze_fraction``,
  ``layer_decay`` and ``head_lr_multiplier``; computed with ``autotransfer.finetune.optim``
  exactly as a trial does.
- ``pruning.png``: the validation accuracy after each epoch of every trial of a real search
  (Fashion-MNIST, 30 images per class, the shipped ``image-quick.yaml``, 10 trials, Hyperband),
  read back from the study's storage.

Needs matplotlib (``pip install -e '.[docs]'``) and, for the study, Debian's
``dataset-fashion-mnist``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

SETTINGS = [  # (title, freeze_fraction, layer_decay, head_lr_multiplier)
    ("fine-tune everything: f=0, decay=1, head x1", 0.0, 1.0, 1.0),
    ("f=0.5, decay=0.8, head x10", 0.5, 0.8, 10.0),
    ("linear probe: f=1, head x10", 1.0, 0.8, 10.0),
]
LR = 1e-3


def group_learning_rates(backbone_id: str, freeze_fraction: float, layer_decay: float,
                         head_lr_multiplier: float, lr: float = LR):
    """``(labels, parameter counts, lrs)`` per layer group and the head; lr None = frozen."""
    from autotransfer.contract.collect import get_backbone
    from autotransfer.finetune.freezing import freeze
    from autotransfer.finetune.optim import param_groups
    from autotransfer.finetune.trainer import TransferModel

    backbone = get_backbone(backbone_id).load(pretrained=True)
    model = TransferModel(backbone, n_classes=10)
    groups = [[f"body.{n}" for n in group] for group in backbone.groups]
    freeze(model, groups, freeze_fraction)
    lr_of = {}
    for group in param_groups(model, groups, lr=lr, layer_decay=layer_decay,
                              head_lr_multiplier=head_lr_multiplier):
        lr_of[group["name"].split(".")[0]] = group["lr"]
    sizes = dict(model.named_parameters())
    labels, counts, lrs = [], [], []
    for i, group in enumerate(groups):
        labels.append("stem" if i == 0 else str(i))
        counts.append(sum(sizes[n].numel() for n in group))
        lrs.append(lr_of.get(f"group{i}"))
    labels.append("head")
    counts.append(sum(p.numel() for p in model.head.parameters()))
    lrs.append(lr_of["head"])
    return labels, counts, lrs


def layer_groups_figure(out: Path, backbone_id: str = "packaged/mobilenetv2_100") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SETTINGS), 1, figsize=(9, 7.5), sharex=True)
    for ax, (title, f, decay, head) in zip(axes, SETTINGS, strict=True):
        labels, counts, lrs = group_learning_rates(backbone_id, f, decay, head)
        x = range(len(labels))
        frozen = [lr is None for lr in lrs]
        heights = [LR * 1e-3 if lr is None else lr for lr in lrs]
        colours = ["#bbbbbb" if fz else ("#d95f02" if lab == "head" else "#1b9e77")
                   for fz, lab in zip(frozen, labels, strict=True)]
        ax.bar(x, heights, color=colours, hatch=None)
        for i, fz in enumerate(frozen):
            if fz:
                ax.text(i, LR * 1.3e-3, "frozen", rotation=90, ha="center", va="bottom",
                        fontsize=7, color="#555555")
        ax.set_yscale("log")
        ax.set_ylim(LR * 1e-3, LR * 30)
        ax.axhline(LR, color="#333333", lw=0.6, ls="--")
        ax.set_ylabel("learning rate")
        n_frozen = sum(frozen)
        ax.set_title(f"{title}  ({n_frozen} of {len(labels) - 1} groups frozen)", fontsize=10)
    axes[-1].set_xticks(list(range(len(labels))))
    axes[-1].set_xticklabels(labels)
    axes[-1].set_xlabel(f"layer group of {backbone_id}, input first (lr = {LR:g}, dashed)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def run_study(workdir: Path, trials: int = 10) -> tuple[str, str]:
    """A real search on 30 Fashion-MNIST images per class; returns (storage URL, study name)."""
    from autotransfer.demo import export_fashion_mnist
    from autotransfer.study.study import search

    data = export_fashion_mnist(workdir / "fashion-mnist", per_class=30, seed=0)
    storage = f"sqlite:///{workdir / 'figure.db'}"
    result = search(data, REPO / "search_spaces" / "image-quick.yaml", trials=trials,
                    storage=storage, out=workdir / "out", seed=0, device="cpu")
    return storage, result.study.study_name


def pruning_figure(out: Path, storage: str, study_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [t for t in study.trials if t.intermediate_values]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    spent = 0
    max_epochs = max(max(t.intermediate_values) for t in trials)
    for t in trials:
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        spent += len(steps)
        pruned = t.state == TrialState.PRUNED
        colour = "#bbbbbb" if pruned else "#1b9e77"
        ax.plot(steps, values, marker="x" if pruned else "o", color=colour, lw=1.2)
        ax.annotate(f"#{t.number}", (steps[-1], values[-1]), textcoords="offset points",
                    xytext=(5, -3), fontsize=7, color="#555555" if pruned else "#1b9e77")
    best = study.best_trial
    ax.set_xticks(range(1, max_epochs + 1))
    ax.set_xlim(0.8, max_epochs + 0.5)
    ax.set_xlabel("epoch (the pruner's resource)")
    ax.set_ylabel("validation accuracy")
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    ax.set_title(f"{len(trials)} trials, {n_pruned} pruned (grey x): {spent} epochs trained "
                 f"of {len(trials) * max_epochs}; best #{best.number} {best.value:.3f}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    which = set(argv) or {"groups", "pruning"}
    if "groups" in which:
        layer_groups_figure(HERE / "layer-groups.png")
    if "pruning" in which:
        with tempfile.TemporaryDirectory() as tmp:
            storage, name = run_study(Path(tmp))
            pruning_figure(HERE / "pruning.png", storage, name)


if __name__ == "__main__":
    main(sys.argv[1:])
