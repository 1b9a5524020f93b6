"""Rebuild the timm zoo's shipped snapshot of timm's published tables (``timm_tables.json``).

    python benchmarks/timm_snapshot.py /path/to/pytorch-image-models [COMMIT]

reads ``results/*.csv`` at COMMIT (default HEAD) with ``git show`` and the licence of each
pretrained tag from the installed timm's ``pretrained_cfg``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import timm
from timm.models import get_pretrained_cfg

from autotransfer_timm.tables import SNAPSHOT, build


def main(repo: str, commit: str = "HEAD") -> None:
    full = subprocess.run(["git", "-C", repo, "rev-parse", commit], check=True,
                          capture_output=True, text=True).stdout.strip()
    date = subprocess.run(["git", "-C", repo, "show", "-s", "--format=%cs", full], check=True,
                          capture_output=True, text=True).stdout.strip()

    def read(name: str) -> str:
        return subprocess.run(["git", "-C", repo, "show", f"{full}:results/{name}"], check=True,
                              capture_output=True, text=True).stdout

    tagged = set(timm.list_models(pretrained=True))
    licenses = {}
    for name in tagged:
        cfg = get_pretrained_cfg(name)
        if cfg is not None and cfg.license:
            licenses[name] = cfg.license
    tables = build(read, source=f"timm results/ at commit {full[:8]} ({date})", licenses=licenses)
    SNAPSHOT.write_text(json.dumps(tables, separators=(",", ":")))
    print(f"{SNAPSHOT}: {len(tables['models'])} models, {SNAPSHOT.stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
