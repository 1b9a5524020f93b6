"""How to read a dataset, as one object: :class:`DataOptions`.

What a search read (the modality, the columns of a table or a Hugging Face dataset, the encoded
data store) travels as one value from the command line or the Python API to ``load_data``, and
is recorded in ``best.yaml`` (``source.data_options``) so that ``autotransfer.train`` refits
exactly that data without being told again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.errors import OptionError

#: The study's user attribute that holds the search's :meth:`DataOptions.to_yaml`.
DATA_OPTIONS_ATTR = "data_options"


def column_roles() -> dict[str, str | None]:
    """The column roles a dataset may name, and the column each defaults to: ``label``, and
    one per registered modality, named after it (``text``, ``image``, ``audio``, a plugin's;
    None: from the data: the features of a Hugging Face dataset, ``path`` of a CSV of files)."""
    from autotransfer.contract.collect import get_modalities

    return {"label": "label", **{m.name: m.default_column for m in get_modalities().values()}}


@dataclass(frozen=True)
class DataOptions:
    """How to read a dataset besides its path.

    Attributes:
        modality: ``image``, ``text``, ``audio`` (or a plugin's); None: detected from the data.
        columns: role -> column name, for the roles of :func:`column_roles`
            (``{"image": "photo"}``); a role left out takes its default.
        data_store: where encoded splits are kept (``memory``, a folder); None: the default of
            :mod:`autotransfer.data.store`.

    Raises:
        OptionError: an unknown column role or a column that is not a non-empty string.
    """

    modality: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    data_store: str | Path | None = None

    def __post_init__(self) -> None:
        roles = column_roles() if self.columns else {}
        for role, name in self.columns.items():
            if role not in roles:
                raise OptionError("columns", f": unknown column role {role!r}; expected one of "
                                             f"{', '.join(roles)}")
            if not isinstance(name, str) or not name:
                raise OptionError(f"{role}_column", f" must be a column name, got {name!r}")
        object.__setattr__(self, "columns", dict(self.columns))

    @classmethod
    def of(cls, *, modality: str | None = None, data_store: str | Path | None = None,
           columns: Mapping[str, str] | None = None, **role_columns: str | None) -> DataOptions:
        """From the keyword arguments of the Python API: ``text_column="review"``,
        ``image_column="photo"`` (``ROLE_column`` for any role of :func:`column_roles`), or
        ``columns`` (None: not given).

        Raises:
            OptionError: a keyword that names no column role.
        """
        given = dict(columns or {})
        for key, name in role_columns.items():
            if not key.endswith("_column"):
                raise OptionError(key, ": unknown data option; expected modality, data_store, "
                                       "columns or ROLE_column (text_column, image_column...)")
            if name is not None:
                given[key.removesuffix("_column")] = name
        return cls(modality, given, data_store)

    def column(self, role: str) -> str | None:
        """The column of ``role``: the one given, else its default (None for an unknown role)."""
        return self.columns[role] if role in self.columns else column_roles().get(role)

    def over(self, recorded: DataOptions) -> DataOptions:
        """These options, with what they leave open taken from ``recorded`` (best.yaml's)."""
        return DataOptions(self.modality or recorded.modality,
                           {**recorded.columns, **self.columns},
                           self.data_store if self.data_store is not None
                           else recorded.data_store)

    def resolved(self, dataset: Any) -> DataOptions:
        """What reading ``dataset`` (a :class:`~autotransfer.data.LabelledData` read with these
        options) actually used: its modality (the detected one when none was given) and the
        columns of its label and its modality's role that it read from a table or a Hugging
        Face dataset (each given column, else its default; a folder of class sub-folders reads
        none, so only given ones are kept); the data store as given."""
        roles = ("label", dataset.modality)
        from_table = Path(str(dataset.source)).is_file() or bool(dataset.origin)
        columns = {role: name for role, name in self.columns.items() if role in roles}
        if from_table:
            for role in roles:
                name = self.column(role)
                if name is not None:
                    columns.setdefault(role, name)
        return DataOptions(dataset.modality, columns, self.data_store)

    def differences(self, other: DataOptions) -> list[str]:
        """``["modality image -> text", "columns.text review -> body"]``: how ``other`` reads
        the data differently, where both say (options recorded before they were resolved
        leave the modality None when it was detected; the data store, a cache location, is
        not compared)."""
        found = [] if None in (self.modality, other.modality) or (
            self.modality == other.modality) else [f"modality {self.modality} -> {other.modality}"]
        for role in sorted(set(self.columns) & set(other.columns)):
            before, after = self.columns[role], other.columns[role]
            if before != after:
                found.append(f"columns.{role} {before} -> {after}")
        return found

    def to_yaml(self) -> dict[str, Any]:
        """The mapping ``best.yaml`` records (``source.data_options``)."""
        return {"modality": self.modality, "columns": dict(self.columns),
                "data_store": None if self.data_store is None else str(self.data_store)}

    @classmethod
    def from_yaml(cls, mapping: Any, where: str) -> DataOptions:
        """Read :meth:`to_yaml`'s mapping back; ``where`` names it in errors.

        Raises:
            OptionError: not a mapping, an unknown key, or a bad column.
        """
        if mapping is None:
            return cls()
        if not isinstance(mapping, Mapping):
            raise OptionError("data_options", f" in {where} must be a mapping, got "
                                              f"{type(mapping).__name__}")
        unknown = set(mapping) - {"modality", "columns", "data_store"}
        if unknown:
            raise OptionError("data_options", f" in {where}: unknown key "
                                              f"{sorted(unknown)[0]!r}; expected modality, "
                                              "columns, data_store")
        columns = mapping.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise OptionError("data_options", f" in {where}: columns must be a mapping")
        return cls(mapping.get("modality"), columns, mapping.get("data_store"))
