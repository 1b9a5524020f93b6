"""The default search space of each modality, shipped as package data (``defaults/*.yaml``).

``autotransfer search DATA`` without ``--space`` (``search(data)`` without ``space``) reads the
one of the data's modality. Each lists backbones whose weights ship in pip packages
(``packaged/``), so that it runs with no hub; the repository's ``search_spaces/*-quick.yaml``
are links to these files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from autotransfer.errors import SpaceError

#: The modalities that have a default space.
MODALITIES = ("image", "text", "audio")


def default_space(modality: str) -> Path:
    """The default space file of ``modality`` (``.../autotransfer/space/defaults/image.yaml``).

    Raises:
        SpaceError: ``modality`` has none (a plugin's modality): names ``--space``.
    """
    if modality not in MODALITIES:
        raise SpaceError(f"no default search space for {modality} data (there is one for "
                         f"{', '.join(MODALITIES)}): give one with --space FILE")
    return Path(str(resources.files("autotransfer.space") / "defaults" / f"{modality}.yaml"))
