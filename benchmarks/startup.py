"""Start-up of the commands that should answer at once, as whole processes, side by side.

Each command runs as a user runs it (a fresh ``python -m autotransfer.cli ...`` process, the
tcmalloc re-execution included), interleaved with the others, ``--repeat`` times; the median
wall time and CPU time (user + system: steadier on a shared machine) are compared with
``python -c "import torch"``, the floor of any command that loads
torch. Targets (issue 17): ``backbones packaged/``, ``plugins`` and a bad ``--space`` error
under 1.0 s.

    python benchmarks/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0


def commands(work: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "autotransfer.cli"]
    return {
        'python -c "import torch" (floor)': [sys.executable, "-c", "import torch"],
        "backbones packaged/": [*cli, "backbones", "packaged/"],
        "plugins": [*cli, "plugins"],
        "--help": [*cli, "--help"],
        "search --help": [*cli, "search", "--help"],
        "search, bad --space (epochs: 0)": [
            *cli, "search", str(work / "data"), "--space", str(work / "bad.yaml"),
            "--trials", "1"],
        "search, unknown backbone in --space": [
            *cli, "search", str(work / "data"), "--space", str(work / "typo.yaml"),
            "--trials", "1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    (work / "data" / "a").mkdir(parents=True)
    (work / "bad.yaml").write_text("backbones: [packaged/mobilenetv2_100]\nepochs: 0\n")
    (work / "typo.yaml").write_text("backbones: [packaged/mobilenetv2_10]\nepochs: 1\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = commands(work)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}  # user + system seconds
    for _ in range(args.repeat):  # interleaved, so that load on the machine hits all alike
        for name, command in runs.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
            times[name].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            expect_error = "bad --space" in name or "unknown backbone" in name
            if (done.returncode != 0) != expect_error:
                raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip()}")
    load = os.getloadavg()
    print(f"{sys.executable}, median of {args.repeat} whole processes each; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    floor = statistics.median(times['python -c "import torch" (floor)'])
    cpu_floor = statistics.median(cpu['python -c "import torch" (floor)'])
    print(f"{'command':40}{'wall s':>8}{'min s':>7}{'/ floor':>8}{'CPU s':>7}{'/ floor':>8}"
          "  target (median wall)")
    for name, seconds in times.items():
        median, used = statistics.median(seconds), statistics.median(cpu[name])
        target = "" if "floor" in name or "help" in name else (
            f"< {TARGET_S:.1f} s: {'met' if median < TARGET_S else 'NOT met'}")
        print(f"{name:40}{median:>8.2f}{min(seconds):>7.2f}{median / floor:>7.2f}x"
              f"{used:>7.2f}{used / cpu_floor:>7.2f}x  {target}")


if __name__ == "__main__":
    main()
