"""A search-space file read as its author meant: numbers as YAML 1.2 reads them, keys given
twice refused, and the line of every key kept for the error messages.

PyYAML implements YAML 1.1, where ``3e-3`` (no dot) is the string ``'3e-3'`` while ``3.0e-3``
is a float; YAML 1.2 and JSON read both as the number 0.003. The loader here is PyYAML's
``SafeLoader`` with YAML 1.2's float pattern added (PyYAML's own resolver mechanism), so that
one rule holds for a fixed value, a categorical choice and a range bound alike. PyYAML keeps the
last of two equal keys silently; here the composed node tree is walked first, each key's line
recorded and every key given twice reported with both lines. ``describe`` and
``problem_lines`` turn pydantic's errors and these into one line per problem, in file order.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

#: YAML 1.2 (core schema) floats that YAML 1.1 reads as strings: ``3e-3``, ``1E5``, ``-2e+4``
_YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class SpaceLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2's exponent floats (``3e-3``) as floats."""


SpaceLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT,
                                  list("-+0123456789"))

#: a path of keys / list indices from the document's root: ``("params", "lr")``
Path = tuple[Any, ...]


def read_yaml(text: str) -> tuple[Any, dict[Path, int], list[tuple[Path, str]]]:
    """Parse ``text``: the data, the 1-based line of every key and list item, and problems.

    Returns:
        ``(data, lines, problems)``: ``lines[("params", "lr")]`` is the line where ``lr`` is
        written; ``problems`` are ``(path, message)`` for each key given twice in one mapping.

    Raises:
        yaml.YAMLError: the text is not YAML.
    """
    loader = SpaceLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path, int] = {}
        problems: list[tuple[Path, str]] = []
        if node is not None:
            _walk(node, (), lines, problems)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, problems


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int],
          problems: list[tuple[Path, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            where = (*path, key)
            if where in lines:  # PyYAML keeps the last one: its lines are the ones kept
                problems.append((where, f"given twice (lines {lines[where]} and {line}); only "
                                        "the last would be read: merge them into one"))
                for known in [k for k in lines if k[:len(where)] == where]:
                    del lines[known]
            lines[where] = line
            _walk(value_node, where, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, problems)


def line_of(lines: dict[Path, int], key: str) -> int | None:
    """The line of a dotted key (``params.lr.choices[1]``, ``backbones.0``), or of its nearest
    parent that has one; None when no line is known."""
    parts: list[Any] = []
    for part in re.split(r"\.|\[|\]", key):
        if part:
            parts.append(int(part) if part.isdigit() else part)
    while parts:
        found = lines.get(tuple(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def problem_lines(found: list[tuple[str, str]], source: str, lines: dict) -> str:
    """One line per problem, in the file's order: ``source:LINE: key: message``."""
    out = []
    for key, text in found:
        line = line_of(lines, key) if key else None
        out.append((line or 0, f"{source}:{line}: {text}" if line else f"{source}: {text}"))
    return "\n".join(text for _, text in sorted(out, key=lambda item: item[0]))


#: pydantic's errors for an input that is not a scalar of the type (a union's scalar members)
_SCALAR_TYPE_ERRORS = frozenset({"bool_type", "int_type", "float_type", "string_type",
                                 "none_required"})


def describe(exc: ValidationError) -> list[tuple[str, str]]:
    """``(key, message)`` for each key that pydantic refused (its first error per key)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    found: dict[str, str] = {}  # key -> the line that names it
    scalars = ("bool", "int", "float", "str", "none")
    for error in errors:
        if isinstance(error["input"], dict) and error["type"] in _SCALAR_TYPE_ERRORS:
            continue  # a mapping was not meant as a scalar member of a union
        # pydantic puts union members in the location; keep the user's own keys
        loc = [str(p) for p in error["loc"] if not any(c in str(p) for c in "[(")]
        loc = [p for p in loc if p not in scalars]
        key = ".".join(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            parent, _, name = key.rpartition(".")
            found.setdefault(key, f"unknown key {name!r}" + (f" in {parent}" if parent else ""))
        elif kind == "missing":
            found.setdefault(key, f"missing key {key!r}")
        elif kind == "union_tag_invalid":
            found.setdefault(key, f"{key}.type: must be float, int or categorical, got "
                                  f"{error['input'].get('type')!r}")
        else:
            for line in error["msg"].removeprefix("Value error, ").splitlines():
                name, sep, _ = line.partition(": ")
                if key == "" and sep and " " not in name:  # the model check's "key: message"
                    found.setdefault(name, line)
                else:
                    found.setdefault(key, f"{key}: {line}" if key else line)
    return list(found.items())
