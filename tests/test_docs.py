"""The docs stay true: references match the code, and every code block in them runs."""

import re
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
import typer

from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.space.schema import SearchSpace

REPO = Path(__file__).resolve().parents[1]


def _table_rows(text: str, heading: str) -> dict[str, list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_hyperparameter_table_matches_the_schema():
    rows = _table_rows((REPO / "docs" / "search-spaces.md").read_text(), "Hyperparameters")
    assert list(rows) == list(HYPERPARAMETERS)
    for name, (default, *_rest) in rows.items():
        expected = HYPERPARAMETERS[name].default
        if expected is None:
            assert default == "the backbone's", name
        elif isinstance(expected, str):
            assert default == f"`{expected}`", name
        else:
            assert float(default) == float(expected), name


def test_top_level_key_table_matches_the_schema():
    rows = _table_rows((REPO / "docs" / "search-spaces.md").read_text(), "Top-level keys")
    assert set(rows) == set(SearchSpace.model_fields)


def test_ci_runs_the_test_command_that_readme_shows_first():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(make \w+)", readme, flags=re.M)
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_plugin_tutorial_shows_the_example_plugin_file_for_file():
    tutorial = (REPO / "docs" / "plugins" / "tutorial.md").read_text()
    blocks = dict(re.findall(r'```\w+ title="([^"]+)"\n(.*?)\n```', tutorial, flags=re.S))
    for name in ("pyproject.toml", "autotransfer_example_zoo/__init__.py",
                 "tests/test_example_zoo.py"):
        source = (REPO / "plugins" / "example_zoo" / name).read_text().rstrip()
        assert blocks[name] == source, f"docs/plugins/tutorial.md shows an old {name}"


# --- reference pages generated from, or checked against, the code -------------------------


def test_cli_reference_is_what_the_cli_says():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        from gen_cli import render
    finally:
        sys.path.remove(str(REPO / "docs"))
    assert (REPO / "docs" / "cli.md").read_text() == render(), (
        "docs/cli.md is out of date: run python docs/gen_cli.py"
    )


def test_every_command_prints_its_help(capsys):
    from autotransfer.cli import app, main

    for name in [None, *typer.main.get_command(app).commands]:
        main([*([name] if name else []), "--help"])
        out = capsys.readouterr()
        assert "Usage:" in out.out and not out.err, (name, out.err)


def _valid(h) -> str:
    """The 'valid' cell of docs/search-spaces.md, from a Hyperparameter's range."""
    if h.validate is not None:  # method: the builtin tuning methods
        from autotransfer.space.methods import BUILTIN_METHODS

        return ", ".join(f"`{m}`" for m in BUILTIN_METHODS)
    if h.choices is not None:
        return ", ".join(f"`{c}`" for c in h.choices)
    if h.kind is int and h.low is not None and h.high is not None:
        return f"{h.low:g}-{h.high:g}"
    if h.low is not None and h.high is not None:
        return f"{'(' if h.low_open else '['}{h.low:g}, {h.high:g}{')' if h.high_open else ']'}"
    return f"{'>' if h.low_open else '>='} {h.low:g}"


def test_hyperparameter_ranges_match_the_schema():
    rows = _table_rows((REPO / "docs" / "search-spaces.md").read_text(), "Hyperparameters")
    for name, (_default, valid, _meaning) in rows.items():
        assert valid == _valid(HYPERPARAMETERS[name]), name


def test_top_level_key_types_and_defaults_match_the_schema():
    from pydantic_core import PydanticUndefined

    rows = _table_rows((REPO / "docs" / "search-spaces.md").read_text(), "Top-level keys")
    for name, field in SearchSpace.model_fields.items():
        kind, default, _meaning = rows[name]
        if field.is_required():
            assert default == "required", name
        elif field.default is PydanticUndefined:  # a default_factory
            assert default == f"`{field.default_factory()}`", name
        elif isinstance(field.default, str):
            assert default == f"`{field.default}`", name
        elif field.default is None:  # unset: the page says what takes its place
            assert default in ("none", "the metric"), name
        else:
            assert float(default) == float(field.default), name
        for choice in get_args(field.annotation) if get_origin(field.annotation) is Literal else ():
            assert f"`{choice}`" in kind, (name, choice)
        for bound in ("ge", "le", "gt", "lt"):
            for meta in field.metadata:
                if hasattr(meta, bound):
                    assert f"{getattr(meta, bound):g}" in kind, (name, bound)


# --- pages that describe files the code writes ----------------------------------------------


def _keys_table(heading_text: str) -> list[str]:
    text = (REPO / "docs" / "concepts.md").read_text()
    section = text.split(heading_text, 1)[1].split("\n\n**", 1)[0].split("\n## ", 1)[0]
    return [line.split("|")[1].strip().strip("`") for line in section.splitlines()
            if line.startswith("| `")]


def _finished_study(tmp_path, *, probe: bool = False):
    """A study of one completed default-configuration trial (``probe``: a sampled trial and a
    worse linear probe, both keeping their predictions, so that best.yaml has a search gain)."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution

    from autotransfer.finetune.predictions import encode

    labels = np.array([0] * 5 + [1] * 5)

    def kept(right: int):  # the first `right` examples predicted right
        preds = np.where(np.arange(10) < right, labels, 1 - labels)
        return encode({"val": (np.eye(2)[preds], labels), "test": (np.eye(2)[preds], labels)})

    study = optuna.create_study(direction="maximize", study_name="s")
    params = {"freeze_fraction": 0.5, "lr": 1e-3}
    distributions = {"backbone": CategoricalDistribution(["packaged/mobilenetv2_100"])}
    study.add_trial(optuna.trial.create_trial(
        params={"backbone": "packaged/mobilenetv2_100"}, distributions=distributions,
        value=0.8, intermediate_values={1: 0.7, 2: 0.8},
        user_attrs={"params": params, "test_score": 0.75, "classes": ["a", "b"],
                    "seconds_per_epoch": 1.0,
                    "confusion": {"val": [[4, 1], [1, 4]], "test": [[3, 1], [1, 3]]},
                    **({"predictions": kept(8)} if probe else {"reference": "default"})},
    ))
    if probe:
        study.add_trial(optuna.trial.create_trial(
            params={"backbone": "packaged/mobilenetv2_100"}, distributions=distributions,
            value=0.6, intermediate_values={1: 0.6},
            user_attrs={"params": {**params, "freeze_fraction": 1.0}, "test_score": 0.6,
                        "classes": ["a", "b"], "seconds_per_epoch": 1.0,
                        "reference": "linear_probe", "predictions": kept(6),
                        "confusion": {"val": [[3, 2], [2, 3]], "test": [[3, 2], [2, 3]]}},
        ))
    study.set_user_attr("transfer_effect", {"trial": 0, "val": 0.3, "test": 0.25,
                                            "scratch_val_score": 0.5, "scratch_test_score": 0.5})
    return study


def test_leaderboard_columns_on_the_concepts_page_are_the_csv_columns(tmp_path):
    from autotransfer.study.results.report import leaderboard

    (row,) = leaderboard(_finished_study(tmp_path))
    assert _keys_table("**`leaderboard.csv`**") == list(row)


def test_best_yaml_keys_on_the_concepts_page_are_the_written_keys(tmp_path):
    from autotransfer.space.schema import parse_space
    from autotransfer.study.results.report import best_config

    space = parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": 2})
    config = best_config(_finished_study(tmp_path, probe=True), space, data="d", storage="s",
                         space_file="f")
    assert _keys_table("**`best.yaml`**") == list(config)


# --- the site -------------------------------------------------------------------------------


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_site_and_the_plugin_pages_are_linked_from_the_index():
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    pages = sorted(str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md"))
    assert sorted(_nav_pages(config["nav"])) == pages
    index = (REPO / "docs" / "index.md").read_text()
    for page in ("plugins/index.md", "plugins/tutorial.md", "plugins/testing.md"):
        assert f"]({page})" in index, page


def test_changelog_keeps_a_changelog_form():
    text = (REPO / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in text and "\n## [Unreleased]\n" in text
    for version in re.split(r"\n## ", text)[1:]:
        headings = re.findall(r"^### (.+)$", version, flags=re.M)
        assert headings, version.splitlines()[0]
        assert len(headings) == len(set(headings)), f"a section repeats in {version[:20]!r}"
        assert set(headings) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed",
                                 "Security"}, headings


# --- every code block of every page runs -------------------------------------------------------


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


@pytest.fixture(scope="session")
def docs_data(tmp_path_factory) -> Path:
    """What the pages expect in data/: a small Fashion-MNIST export (once per session)."""
    from autotransfer.demo import export_fashion_mnist

    data = tmp_path_factory.mktemp("docs-data")
    export_fashion_mnist(data / "fashion-mnist", per_class=10, test_per_class=3, seed=0)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_code_block_of_the_page_runs(page, docs_data, tmp_path):
    """Runs the page's bash and python blocks in order in a copy of the repository root, with
    demo data in data/fashion-mnist; fails with the page and line of the block that broke. One
    test per page, so that the pages run in parallel under pytest-xdist."""
    import docblocks

    workdir = docblocks.make_workdir(tmp_path / "work", docs_data)
    result = docblocks.run_page(page, workdir)  # raises BlockFailed, naming the page and line
    print(f"{page.name}: {len(result.ran)} code blocks run, {len(result.written)} files "
          f"written, {len(result.not_run)} not run",
          *(f"{block.where}: {why}" for block, why in result.not_run), sep="\n  ")


def test_the_docs_have_code_blocks_to_run():
    """The pages keep at least 40 blocks that the test above runs (not marked 'not run')."""
    import docblocks

    runnable = [block for page in _pages() for block in docblocks.parse(page)
                if block.lang in docblocks.RUN and not block.title
                and not (block.marker or "").startswith("not run")]
    assert len(runnable) >= 40, len(runnable)


def test_every_search_space_shown_in_the_docs_is_valid():
    """Spaces shown but not run (``yaml`` blocks with ``backbones:``) still match the schema."""
    import yaml

    import docblocks
    from autotransfer.space.schema import parse_space

    checked = 0
    for page in _pages():
        for block in docblocks.parse(page):
            if block.lang != "yaml":
                continue
            data = yaml.safe_load(block.code)
            if isinstance(data, dict) and "backbones" in data:
                parse_space(data, block.where)  # a SpaceError names the page and line
                checked += 1
    assert checked >= 5


def test_every_shipped_search_space_is_listed_and_valid():
    from autotransfer.space.schema import load_space

    page = (REPO / "docs" / "search-spaces.md").read_text()
    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        assert f"`{path.name}`" in page or f"`search_spaces/{path.name}`" in page, path.name
        load_space(path)
