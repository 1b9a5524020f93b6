"""The docs stay true: reference tables match the schema, README's commands match CI."""

import re
from pathlib import Path

from autotransfer.space import HYPERPARAMETERS, SearchSpace

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
