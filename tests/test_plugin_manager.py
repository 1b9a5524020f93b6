"""Plugin manager behaviour with real installed distributions (entry points on sys.path):
broken plugins are reported by name and the others keep working; hook calls can be traced."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autotransfer.contract.manager import hook_names

PLUGINS = {
    "good_zoo": """
        from autotransfer import BackboneEntry, hookimpl
        from autotransfer.testing import tiny_cnn_backbone

        @hookimpl
        def register_backbones(register):
            register(BackboneEntry("good/tiny", "image", loader=tiny_cnn_backbone))
            register(BackboneEntry("packaged/mobilenetv2_100", "image", loader=tiny_cnn_backbone))
        """,
    "import_error_zoo": """
        import a_module_that_does_not_exist
        """,
    "misspelt_zoo": """
        from autotransfer import hookimpl

        @hookimpl
        def register_backbone(register):
            pass
        """,
    "raising_zoo": """
        from autotransfer import hookimpl

        @hookimpl
        def register_backbones(register):
            raise RuntimeError("catalogue server down")
        """,
}


def _install(site: Path, name: str, source: str) -> None:
    (site / f"{name}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[autotransfer]\n{name} = {name}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    for name, source in PLUGINS.items():
        _install(site, name, source)
    return site


def _run(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", *args],
        capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]), **env},
    )


def test_broken_plugins_are_reported_by_name_and_the_others_work(site):
    run = _run(site, "backbones", "good/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("good/tiny\timage")
    err = run.stderr
    assert "plugin 'import_error_zoo' failed to import: ModuleNotFoundError" in err
    assert ("plugin 'misspelt_zoo' implements unknown hook 'register_backbone'; "
            "did you mean 'register_backbones'?") in err
    assert "plugin 'raising_zoo' failed in register_backbones: RuntimeError: catalogue" in err
    assert ("plugin 'good_zoo' registers backbone 'packaged/mobilenetv2_100', which plugin "
            "'autotransfer_packaged' already registered; the first one is kept") in err


def test_plugins_command_shows_name_version_and_hooks(site):
    run = _run(site, "plugins")
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if "good_zoo" in x)
    assert "1.2.3" in line and "register_backbones" in line
    assert "misspelt_zoo" not in run.stdout  # left out, and said why on stderr


def test_load_plugins_variable_limits_what_loads(site):
    run = _run(site, "plugins", AUTOTRANSFER_LOAD_PLUGINS="good_zoo")
    assert "good_zoo" in run.stdout and "autotransfer_timm" not in run.stdout
    assert run.stderr == ""  # the broken ones were not even imported


def test_trace_switch_prints_hook_calls(site):
    run = _run(site, "--trace-hooks", "backbones", "good/",
               AUTOTRANSFER_LOAD_PLUGINS="good_zoo")
    assert re.search(r"autotransfer trace: +register_backbones \[hook\]", run.stderr)
    assert "plugin='good_zoo'" in run.stderr
    env_run = _run(site, "backbones", "good/", AUTOTRANSFER_LOAD_PLUGINS="good_zoo",
                   AUTOTRANSFER_TRACE_HOOKS="1")
    assert re.search(r"autotransfer trace: +register_backbones \[hook\]", env_run.stderr)


def test_every_hook_is_documented_with_its_signature_and_tested():
    docs = (Path(__file__).parents[1] / "docs" / "plugins" / "index.md").read_text()
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("*.py"))  # + plugins
    assert hook_names() == ["register_backbones", "register_methods", "register_modalities",
                            "register_model_formats", "register_objectives", "register_ranking",
                            "register_recipes", "register_strategies", "resolve_backbone"]
    for hook in hook_names():
        assert f"## `{hook}(" in docs, f"docs/plugins/index.md has no section for {hook}"
        assert f"def {hook}(" in tests, f"no test implements the {hook} hook"


def test_entry_facts_are_typed_fields_and_old_metadata_keys_are_read():
    from autotransfer import BackboneEntry
    from autotransfer.errors import PluginError
    from autotransfer.testing import tiny_cnn_backbone

    old = BackboneEntry("z/old", "image", loader=tiny_cnn_backbone,
                        metadata={"imagenet_top1": 71.8, "reference_for": "image",
                                  "reference_options": {"image_size": 32}, "other": 1})
    new = BackboneEntry("z/new", "image", loader=tiny_cnn_backbone, imagenet_top1=71.8,
                        reference_for="image", reference_options={"image_size": 32})
    for entry in (old, new):
        assert (entry.imagenet_top1, entry.reference_for, dict(entry.reference_options)) == (
            71.8, "image", {"image_size": 32})
    with pytest.raises(PluginError, match=r"z/bad: imagenet_top1 must be a % in \[0, 100\], "
                                          "got 718.0"):
        BackboneEntry("z/bad", "image", loader=tiny_cnn_backbone, imagenet_top1=718.0)


SPACE_OF_THREE_PLUGINS = """
backbones: [{id: timm/test_vit, pretrained: false}]
epochs: 1
objectives: [cohen_kappa, trainable]
recipe: {type: head_l2, weight: 0.5, marks: MARKS}
params:
  method: biasplus
  bias_norms: true
  image_size: 32
  lr: 3.0e-3
"""


@pytest.mark.slow
def test_spawned_workers_load_a_plugins_objective_method_and_recipe_through_entry_points(
        fashion_mnist, tmp_path):
    """``--workers 2`` spawns fresh processes: each must find, through the installed entry
    points alone, the metric and cost, the tuning method and the training recipe that the space
    names (one search for the three hooks: each spawned search costs a minute)."""
    import optuna

    from test_objective_from_outside import OBJECTIVES_PLUGIN, _check_objective_trials
    from test_recipe import PLUGIN, RECIPE_PLUGIN, _marks

    site = tmp_path / "site"
    site.mkdir()
    for module, source in (("kappa_plugin", OBJECTIVES_PLUGIN), ("biasplus_plugin", PLUGIN),
                           ("headl2_plugin", RECIPE_PLUGIN)):
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{module}-1.0.dist-info"
        info.mkdir()
        name = module.removesuffix("_plugin")
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-plugin\n"
                                       "Version: 1.0\n")
        (info / "entry_points.txt").write_text(f"[autotransfer]\n{name} = {module}:plugin\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "space.yaml").write_text(SPACE_OF_THREE_PLUGINS.replace("MARKS", str(marks)))
    storage = f"sqlite:///{tmp_path}/s.db"
    run = subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", "search",
         str(fashion_mnist), "--space", "space.yaml", "--trials", "2", "--workers", "2",
         "--storage", storage, "--study", "w", "--out", "out", "--device", "cpu",
         "--no-references"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])})
    assert run.returncode == 0, run.stderr
    trials = optuna.load_study(study_name="w", storage=storage).trials
    _check_objective_trials(trials)  # two completed; the plugin's metric and cost as values
    assert {t.user_attrs["params"]["method"] for t in trials} == {"biasplus"}
    assert sorted(_marks(marks)) == sorted(t.user_attrs["worker_pid"] for t in trials)
    assert os.getpid() not in {t.user_attrs["worker_pid"] for t in trials}  # spawned workers
