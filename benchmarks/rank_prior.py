"""How well the ranking prior (ImageNet-1k top-1) orders backbones on other test sets (#39).

Kendall's tau (``scipy.stats.kendalltau``, tau-b) between a ranker's score and the published
top-1 on ImageNet-R, ImageNet-Sketch and ImageNet-A, over the model tags that all four tables
of the shipped snapshot have (timm's results/, ``autotransfer_timm/timm_tables.json``). These
shifted test sets are a proxy for transfer: fine-tuned results on other datasets are not
published in tables available offline. Rankers: the prior (ImageNet top-1), size only
(parameter count) and random (the mean tau of 100 random orders, seed 0).

    python benchmarks/rank_prior.py [--max-params 10M]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import kendalltau

from autotransfer.contract.ranking import parse_count
from autotransfer_timm.tables import snapshot


def taus(max_params: int | None = None, orders: int = 100) -> tuple[int, dict[str, dict]]:
    """``(models, {test set: {ranker: tau}})`` on the snapshot's common model tags."""
    tables = snapshot()
    shifted = tables["shifted"]
    common = sorted(m for m, row in tables["models"].items()
                    if all(m in s for s in shifted.values())
                    and (max_params is None or row[2] * 1e6 <= max_params))
    prior = np.array([tables["models"][m][1] for m in common])
    size = np.array([tables["models"][m][2] for m in common])
    rng = np.random.default_rng(0)
    result = {}
    for name, top1 in shifted.items():
        target = np.array([top1[m] for m in common])
        random = [kendalltau(rng.permutation(len(common)), target).statistic
                  for _ in range(orders)]
        result[name] = {"prior": kendalltau(prior, target).statistic,
                        "size": kendalltau(size, target).statistic,
                        "random": float(np.mean(random)), "random_sd": float(np.std(random))}
    return len(common), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", default=None, help="only models up to this size (10M)")
    args = parser.parse_args()
    bound = parse_count(args.max_params) if args.max_params else None
    n, result = taus(bound)
    print(f"{n} model tags{f' of at most {args.max_params} parameters' if bound else ''} "
          f"({snapshot()['source']})")
    print("| test set | prior (ImageNet top-1) | size only | random (mean of 100, sd) |")
    print("|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['prior']:.3f} | {r['size']:.3f} | {r['random']:.3f} "
              f"({r['random_sd']:.3f}) |")


if __name__ == "__main__":
    main()
