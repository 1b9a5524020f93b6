"""The package layout: old module paths still import for one release, and warn."""

import importlib
import subprocess
import sys

import pytest

from autotransfer._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_warns_and_gives_the_moved_names(old):
    sys.modules.pop(old, None)
    with pytest.warns(FutureWarning, match=rf"{old} is deprecated .* import from"):
        shim = importlib.import_module(old)
    for target in MOVED[old]:
        moved = importlib.import_module(target)
        for name, value in vars(moved).items():
            if not name.startswith("_") and getattr(value, "__module__", None) == target:
                assert getattr(shim, name) is value, f"{old}.{name}"


def test_old_names_plugins_and_docs_used_still_resolve():
    for old in MOVED:
        sys.modules.pop(old, None)
    with pytest.warns(FutureWarning):
        from autotransfer.backbones import BackboneEntry, get_registry  # noqa: F401
        from autotransfer.cache import Stage, sequential_split  # noqa: F401
        from autotransfer.layers import MATCH_PREV_GROUP, group_names, param_groups  # noqa: F401
        from autotransfer.study import make_pruner, search  # noqa: F401
        from autotransfer.training import Trainer, resolve_device  # noqa: F401


def test_search_and_train_stay_functions_after_their_parts_are_imported():
    # autotransfer/search/ and autotransfer/train/ are packages named like the API functions;
    # importing one binds the package to the attribute, which must still run the function.
    code = (
        "import autotransfer.search.study, autotransfer.train.trainer, autotransfer\n"
        "for call in (lambda: autotransfer.search('d', 's', trials=0),\n"
        "             lambda: autotransfer.train('nowhere/best.yaml', out='x')):\n"
        "    try:\n"
        "        call()\n"
        "    except Exception as exc:\n"
        "        print(isinstance(exc, autotransfer.AutotransferError), type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["True", "True"], done.stdout
