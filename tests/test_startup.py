"""Start-up: listing, --help and bad-input errors import no model library and list only the zoos
they need (lazy catalogues). Timings are measured by benchmarks/startup.py, not here."""

import json
import subprocess
import sys

import pytest

from conftest import write_images

HEAVY = ("torch", "timm", "transformers", "torchvision", "optuna", "sqlalchemy")

PROBE = """
import json, sys
from autotransfer.contract import collect as backbones
from autotransfer.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
registry = backbones._registry
print(json.dumps({"heavy": [m for m in HEAVY if m in sys.modules],
                  "listed": None if registry is None else registry.listed}))
""".replace("HEAVY", repr(HEAVY))


def _probe(*args: str, cwd) -> tuple[dict, subprocess.CompletedProcess]:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    return json.loads(run.stdout.strip().splitlines()[-1]), run


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("startup")
    for cls in ("cat", "dog"):
        write_images(root / "data" / cls, 2)
    (root / "zero-epochs.yaml").write_text("backbones: [packaged/mobilenetv2_100]\nepochs: 0\n")
    (root / "typo.yaml").write_text("backbones: [packaged/mobilenetv2_10]\nepochs: 1\n")
    (root / "zoo-typo.yaml").write_text("backbones: [pakaged/mobilenetv2_100]\nepochs: 1\n")
    return root


def test_listing_one_zoo_lists_only_that_zoo_without_torch(work):
    seen, run = _probe("backbones", "packaged/", cwd=work)
    assert seen == {"heavy": [], "listed": ["packaged"]}
    ids = [line.split("\t")[0] for line in run.stdout.splitlines()[:-1]]
    assert "packaged/mobilenetv2_100" in ids and all(i.startswith("packaged/") for i in ids)
    assert "7 backbones" in run.stderr


def test_listing_a_modality_skips_the_zoos_that_cannot_hold_it(work):
    seen, run = _probe("backbones", "--modality", "text", cwd=work)
    assert seen["heavy"] == [] and "timm" not in seen["listed"] and "hf-text" in seen["listed"]
    assert "packaged/all-MiniLM-L6-v2" in run.stdout and "hf-text/" in run.stdout


@pytest.mark.parametrize("args", [["plugins"], ["--help"], ["search", "--help"], ["--version"]])
def test_plugins_and_help_import_no_model_library_and_list_no_zoo(work, args):
    seen, run = _probe(*args, cwd=work)
    assert seen["heavy"] == [] and not seen["listed"], run.stderr
    assert run.stdout.strip()


@pytest.mark.parametrize(("space", "expected"), [
    ("zero-epochs.yaml", "zero-epochs.yaml:2: epochs: Input should be greater than or equal to 1"),
    ("typo.yaml", "did you mean packaged/mobilenetv2_100?"),
    ("zoo-typo.yaml", "no zoo is called 'pakaged'"),
    ("missing.yaml", "missing.yaml: no such search-space file"),
])
def test_a_bad_space_is_one_line_before_torch_loads(work, space, expected):
    seen, run = _probe("search", "data", "--space", space, "--trials", "1", cwd=work)
    # the space's pruner and sampler are validated by Optuna's constructors (optuna loads)
    assert set(seen["heavy"]) <= {"optuna", "sqlalchemy"}, seen
    assert "timm" not in (seen["listed"] or [])
    assert run.stderr.startswith("error: ") and expected in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and len(run.stdout.splitlines()) == 1
