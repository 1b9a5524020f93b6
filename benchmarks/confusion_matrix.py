"""The report's confusion-matrix plot at many classes: seconds to draw (PNG and HTML) and the
HTML's size, the plot as it was (a count printed in every cell) against the current one, in one
run, on the same synthetic matrix.

A synthetic validation confusion matrix of ``--classes`` classes (``--per-class`` samples each,
``--accuracy`` of them on the diagonal, the rest spread over a few neighbours, as a real
classifier confuses similar classes), drawn ``--rounds`` times each way, alternating.

    python benchmarks/confusion_matrix.py [--classes 250] [--per-class 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic(classes: int, per_class: int, accuracy: float, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    for c in range(classes):
        right = int(round(per_class * accuracy))
        matrix[c, c] = right
        for _ in range(per_class - right):
            matrix[c, (c + int(rng.integers(1, 4))) % classes] += 1
    return matrix.tolist()


def before_plotly(matrix, classes, title):
    """The plot as it was before #26: every cell's count as text."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues",
                                  text=matrix, texttemplate="%{text}"))
    figure.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                         yaxis_autorange="reversed")
    return figure


def before_matplotlib(matrix, classes, title):
    """The plot as it was before #26: scikit-learn's display with every count."""
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=classes)
    display.plot(cmap="Blues", xticks_rotation=45, colorbar=False)
    display.ax_.grid(False)
    for label in display.ax_.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    display.ax_.set_title(title)
    return display.ax_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=250)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--accuracy", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from autotransfer.study.results.report import _draw
    from autotransfer.study.results.scores import _confusion_matplotlib, _confusion_plotly

    classes = [f"class_{i:03d}" for i in range(args.classes)]
    matrix = synthetic(args.classes, args.per_class, args.accuracy)
    title = "Confusion matrix of trial 0 (validation)"
    ways = {
        "before (count in every cell)": (before_plotly, before_matplotlib),
        "now": (_confusion_plotly, _confusion_matplotlib),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, (html, png) in ways.items():
                out = Path(folder) / name.split()[0]
                out.mkdir(exist_ok=True)
                started = time.perf_counter()
                _draw(lambda h=html: h(matrix, classes, title),
                      lambda p=png: p(matrix, classes, title), out, "confusion_matrix")
                seconds[name].append(time.perf_counter() - started)
                sizes[name] = (out / "confusion_matrix.html").stat().st_size
    print(f"{args.classes} classes, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    for name in ways:
        print(f"  {name:30s} {statistics.mean(seconds[name]):7.2f} s (runs "
              f"{', '.join(f'{s:.2f}' for s in seconds[name])}), HTML {sizes[name] / 1e6:.2f} MB")
    before, now = (statistics.mean(seconds[n]) for n in ways)
    print(f"  ratio before / now: {before / now:.1f}x")


if __name__ == "__main__":
    main()
