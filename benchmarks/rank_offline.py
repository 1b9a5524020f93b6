"""Time of ranking every timm image candidate offline from the shipped snapshot (#39 target:
under 2 s), in-process (collect + rank, after plugin loading) and as the whole command.

    HF_HUB_OFFLINE=1 python benchmarks/rank_offline.py
"""

from __future__ import annotations

import subprocess
import sys
import time


def main(repeats: int = 5) -> None:
    from autotransfer.contract.collect import get_ranking_entries
    from autotransfer.contract.manager import load_plugins
    from autotransfer.contract.ranking import rank

    load_plugins()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        entries = get_ranking_entries("image")
        best = rank(entries, 6, max_params=10_000_000, min_throughput=100)
        seconds.append(time.perf_counter() - start)
    print(f"collect + rank {len(entries)} image candidates -> {len(best)}: "
          f"first {seconds[0]:.3f} s (reads the snapshot), median "
          f"{sorted(seconds)[len(seconds) // 2]:.3f} s of {repeats}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autotransfer.cli", "backbones", "--modality", "image",
                    "--rank", "6", "--max-params", "10M", "--min-throughput", "100", "--json"],
                   check=True, capture_output=True)
    print(f"autotransfer backbones --rank 6 (whole command, new process): "
          f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
