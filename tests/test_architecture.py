"""The architecture's import rules (pyproject.toml [tool.importlinter]) hold, and bite."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("", "plugins",
                                                               "plugins/example_zoo"))}
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache",
         "--config", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )


def test_every_import_contract_is_kept():
    done = _lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "autotransfer", root / "autotransfer", ignore=ignore)
    shutil.copytree(REPO / "plugins", root / "plugins", ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_a_broken_rule_fails_the_lint(tmp_path):
    root = _copy(tmp_path)
    # data reaching up into search, and a zoo reaching past the façade
    with (root / "autotransfer" / "data" / "load.py").open("a") as handle:
        handle.write("\nfrom autotransfer.study import report  # noqa\n")
    with (root / "plugins" / "autotransfer_timm" / "__init__.py").open("a") as handle:
        handle.write("\nfrom autotransfer.finetune import cache  # noqa\n")
    done = _lint_imports(root)
    assert done.returncode != 0
    assert "Data imports neither study, finetune, model nor cli BROKEN" in done.stdout
    assert "Zoos import only the plugin façade" in done.stdout
    assert "autotransfer.data.load -> autotransfer.study.report" in done.stdout
    assert "autotransfer_timm -> autotransfer.finetune.cache" in done.stdout
