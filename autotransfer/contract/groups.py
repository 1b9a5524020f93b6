r"""Layer groups (timm ``group_matcher`` format) and what they drive: freezing and lr groups.

A matcher is either timm's dict form, e.g.::

    {"stem": r"^conv_stem|bn1",
     "blocks": [(r"^blocks\.(\d+)\.(\d+)", None), (r"conv_head|bn2", (99999,))]}

or a callable ``name -> ordinal | None``. Names are matched from their start (``re.match``); the
ordinal of a name is the matcher entry's position followed by the regex captures and suffix, and
distinct ordinals sorted give the groups, input first. An ordinal ending in ``99999`` (timm's
``MATCH_PREV_GROUP``) joins the group before it, which is how the final norm joins the last block.
Names that no entry matches belong to the head.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: zoos import group_names without loading torch
    from torch import nn

MATCH_PREV_GROUP = 99999

Matcher = Mapping[str, Any] | Callable[[str], Any]


def _compile(matcher: Matcher) -> Callable[[str], tuple[float, ...] | None]:
    if callable(matcher):

        def called(name: str) -> tuple[float, ...] | None:
            ordinal = matcher(name)
            if ordinal is None:
                return None
            if isinstance(ordinal, Iterable):
                return tuple(float(o) for o in ordinal)
            return (float(ordinal),)

        return called

    rules: list[tuple[re.Pattern[str], tuple[float, ...], tuple[float, ...]]] = []
    for position, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        specs = spec if isinstance(spec, (list, tuple)) else [(spec, None)]
        for pattern, suffix in specs:
            rules.append((re.compile(pattern), (float(position),), tuple(suffix or ())))

    def ordinal_of(name: str) -> tuple[float, ...] | None:
        for regex, prefix, suffix in rules:
            found = regex.match(name)
            if found:
                captures = tuple(float(c) for c in found.groups() if c is not None)
                return prefix + captures + suffix
        return None

    return ordinal_of


def group_names(names: Iterable[str], matcher: Matcher) -> list[list[str]]:
    """Split parameter ``names`` into ordered layer groups; unmatched names are left out.

    Example:
        >>> group_names(["stem.w", "blocks.1.w", "blocks.0.w", "norm.w", "fc.w"],
        ...             {"stem": r"^stem", "blocks": [(r"^blocks\\.(\\d+)", None),
        ...                                            (r"^norm", (99999,))]})
        [['stem.w'], ['blocks.0.w'], ['blocks.1.w', 'norm.w']]
    """
    ordinal_of = _compile(matcher)
    by_ordinal: dict[tuple[float, ...], list[str]] = defaultdict(list)
    for name in names:
        ordinal = ordinal_of(name)
        if ordinal is not None:
            by_ordinal[ordinal].append(name)
    groups: list[list[str]] = []
    for ordinal in sorted(by_ordinal):
        if groups and ordinal[-1] == MATCH_PREV_GROUP:
            groups[-1].extend(by_ordinal[ordinal])
        else:
            groups.append(list(by_ordinal[ordinal]))
    return groups


def check_groups(model: nn.Module, groups: list[list[str]]) -> list[str]:
    """Validate ``groups`` against ``model``; return the head's parameter names.

    Raises:
        ValueError: a group is empty, names an unknown parameter, or a name is in two groups.
    """
    known = [name for name, _ in model.named_parameters()]
    seen: set[str] = set()
    for index, group in enumerate(groups):
        if not group:
            raise ValueError(f"layer group {index} is empty")
        for name in group:
            if name in seen:
                raise ValueError(f"parameter {name!r} is in more than one layer group")
            seen.add(name)
    unknown = seen.difference(known)
    if unknown:
        raise ValueError(f"layer groups name unknown parameters: {sorted(unknown)[:3]}")
    return [name for name in known if name not in seen]










