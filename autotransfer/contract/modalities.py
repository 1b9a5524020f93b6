"""The modality type: what a kind of input (image, audio, text, or a plugin's) is read with.

A modality is offered through the ``register_modalities`` hook
(:mod:`autotransfer.contract.hookspecs`), the builtin ones by the core's default plugin
:mod:`autotransfer.data.modality`, a third party's the same way, so that a package adds a
modality with its zoo and no core file changes. :func:`autotransfer.contract.collect.get_modality`
is the one registry every part asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.errors import DataError, PluginError

#: per-file check: ``(problem, note)``; a problem makes the file unusable (it is skipped or, past
#: the threshold, the data is an error), a note is only reported
Check = Callable[[Path], tuple[str | None, str | None]]


@dataclass(frozen=True)
class Modality:
    """One kind of input.

    Attributes:
        name: ``image``, ``audio``, ``text`` or a plugin's (a lower-case word); also the role
            of its column in a table or a Hugging Face dataset (``columns={"image": "photo"}``).
        suffixes: lower-case file suffixes its decoder reads (``.png``, ``.mp3``...).
        noun: what one sample is called in messages (``image``, ``audio clip``).
        check: the per-file check before trial 1 (None: nothing to check per file).
        sample: writes ``n`` tiny samples into a folder and returns their paths (file
            modalities) or texts, for conformance tests.
        reader: ``reader(root, modality, options) -> ReadResult`` (samples with raw labels by
            split; ``options`` an :class:`autotransfer.data.options.DataOptions`); labels are
            normalised by ``load_data``. The folder reader
            (:func:`autotransfer.data.folders.read_files`: class folders, split folders, a
            ``path,label`` table) serves any file modality.
        files: whether each sample is a file found by its suffix (image, audio); False when
            samples are rows of a table (text). Detection counts only file modalities.
        default_column: the column its samples are in when none is named (text: ``text``;
            None: from the data).

    Raises:
        PluginError: a name that is not a lower-case word.
    """

    name: str
    suffixes: frozenset[str]
    noun: str
    check: Check | None = None
    sample: Callable[[Path, int], list] | None = None
    reader: Callable[..., Any] | None = None
    files: bool = True
    default_column: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier() or \
                self.name != self.name.lower():
            raise PluginError(f"a modality's name must be a lower-case word, got {self.name!r}")
        object.__setattr__(self, "suffixes", frozenset(s.lower() for s in self.suffixes))

    def read(self, root: Path, options: Any):
        """This modality's reader applied to ``root`` (a ``ReadResult``).

        Raises:
            DataError: the modality has no reader.
        """
        if self.reader is None:
            raise DataError(f"{root}: the {self.name} modality has no reader")
        return self.reader(root, self, options)
