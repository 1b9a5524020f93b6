"""What the search bought: the quick search of a modality with reference trials (and the
transfer effect) against the same search without them (today's search), same data, budget and
seeds, side by side in one run.

    python benchmarks/references.py image|text [--trials 10] [--seeds 0 1 2] [--variants on off]
        [--samplers tpe gp]

Prints one row per seed, sampler and variant: the best, the best linear probe and default
configuration, the best trained from scratch, the gain of the search over the best reference,
the seconds until the best trial completed, until the study first matched the other variant's
best (the variant run before it, same seed and sampler), until its last trial ended, and the
wall time (which adds loading the data and, with references, the run from random weights).
Data comes from ``python -m autotransfer.demo`` (Fashion-MNIST 100 per class + 30 test per
class; Rotten Tomatoes 300 + 100 validation per class).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AUTOTRANSFER_HISTORY", "0")

from autotransfer import demo  # noqa: E402
from autotransfer.space.schema import load_space  # noqa: E402
from autotransfer.study.results.scores import best_so_far  # noqa: E402
from autotransfer.study.study import search  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = {  # the demo's data, python -m autotransfer.demo (--per-class N to change its size)
    "image": lambda out, n, _: demo.export_fashion_mnist(out, per_class=n or 100,
                                                         test_per_class=30),
    "text": lambda out, n, val: demo.export_rotten_tomatoes(out, per_class=n or 300,
                                                            val_per_class=val or 100),
}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modality", choices=sorted(DATA))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=["on", "off"], default=["on", "off"],
                        help="with references (and the transfer effect), without, or both")
    parser.add_argument("--per-class", type=int, default=None,
                        help="training examples per class (default: the demo's, 100 images "
                        "or 300 texts)")
    parser.add_argument("--val-per-class", type=int, default=None,
                        help="text: validation examples per class (default: the demo's, 100)")
    parser.add_argument("--samplers", nargs="+", default=[None],
                        help="sampler names to compare (default: the space's own)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp())
    data = DATA[args.modality](work / "data", args.per_class, args.val_per_class)
    shipped = load_space(REPO / "search_spaces" / f"{args.modality}-quick.yaml")
    print("| data | sampler | seed | references | best val (test) | best linear probe val | "
          "best default val | scratch val (test) | gain over best reference | best reached at s "
          "| other variant's best reached at s | trials done at s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    curves: dict[tuple, tuple[list[float], list[float]]] = {}
    for seed, sampler, variant in [(seed, sampler, v) for seed in args.seeds
                                   for sampler in args.samplers for v in args.variants]:
        space = shipped.model_copy(update={"sampler": sampler or shipped.sampler})
        name = f"{space.sampler}-{variant}-{seed}"
        start = time.perf_counter()
        result = search(data, space, trials=args.trials, seed=seed,
                        storage=f"sqlite:///{work}/{name}.db", out=work / name,
                        references=variant == "on", transfer_effect=variant == "on")
        wall = time.perf_counter() - start
        best = result.best or {}
        refs = best.get("references", {})
        effect = best.get("transfer_effect") or {}
        seconds, curve = curves[seed, sampler, variant] = best_so_far(result.study)
        reached = seconds[curve.index(max(curve))] if curve else None
        other = curves.get((seed, sampler, "off" if variant == "on" else "on"))
        # when this study first scored at least the other variant's best (it ran earlier)
        matched = None if not other or not other[1] else next(
            (s for s, b in zip(seconds, curve, strict=True) if b >= max(other[1])), None)
        top = max((r["val_score"] for r in refs.values()), default=None)
        gain = None if top is None else best["val_score"] - top
        done = _trials_done(result.study)
        print(f"| {args.modality} | {space.sampler} | {seed} | {variant} | "
              f"{_fmt(best.get('val_score'))} ({_fmt(best.get('test_score'))}) | "
              f"{_fmt(refs.get('linear_probe', {}).get('val_score'))} | "
              f"{_fmt(refs.get('default', {}).get('val_score'))} | "
              f"{_fmt(effect.get('scratch_val_score'))} "
              f"({_fmt(effect.get('scratch_test_score'))}) | "
              f"{'-' if gain is None else f'{gain:+.4f}'} | {_secs(reached)} | "
              f"{'-' if not other else ('never' if matched is None else _secs(matched))} | "
              f"{_secs(done)} | {wall:.0f} |", flush=True)


def _secs(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _trials_done(study) -> float | None:
    """Seconds from the first trial's start to the last trial's end (without the data
    preparation before them and the transfer-effect run after them)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    if not trials:
        return None
    first = min(t.datetime_start for t in trials)
    return (max(t.datetime_complete for t in trials) - first).total_seconds()


if __name__ == "__main__":
    main()
