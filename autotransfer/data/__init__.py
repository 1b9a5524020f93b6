"""The user's labelled data: one file discovery, one decoder per modality, checks, splits.

Layered, no import circles (``tests/test_import_cycles.py``), from the leaves up:

- :mod:`~autotransfer.data.dataset`: the leaf types (``Split``, ``LabelledData``, ``ReadResult``,
  ``Unused``, ``DataWarning``);
- :mod:`~autotransfer.data.splits`: split names and the held-out validation split;
- :mod:`~autotransfer.data.files`: finding files (junk ignored, symlinks followed, unused named,
  a "did you mean" for a missing one);
- :mod:`~autotransfer.data.options`: ``DataOptions``, how to read a dataset;
- :mod:`~autotransfer.data.pixels`: Pillow's decompression-bomb guard, named;
- :mod:`~autotransfer.data.modality`: the builtin modalities (suffixes, readers, checks), the
  core's default plugin of the ``register_modalities`` hook;
- :mod:`~autotransfer.data.tables`: CSV / TSV / JSONL through the csv and json modules;
- :mod:`~autotransfer.data.labels`: label normalisation and class order;
- :mod:`~autotransfer.data.folders`: the image and audio reader (class and split folders,
  ``path,label`` tables);
- :mod:`~autotransfer.data.hf`, :mod:`~autotransfer.data.hf_media`,
  :mod:`~autotransfer.data.hf_rows`: Hugging Face datasets (saved folders, Parquet / Arrow, hub
  ids), their media columns and rows opened like files;
- :mod:`~autotransfer.data.duplicates`: the same content in two splits;
- :mod:`~autotransfer.data.fingerprint`: what a study's data was, to tell when it changed;
- :mod:`~autotransfer.data.store`: encoded splits on disk, memory-mapped;
- :mod:`~autotransfer.data.batching`: batches of encoded inputs;
- :mod:`~autotransfer.data.checks`: the checks before trial 1, in one report;
- :mod:`~autotransfer.data.load`: the top: ``load_data``, ``detect_modality``, ``check_source``;
- :mod:`~autotransfer.data.inspect`: what a search would read, without training.

Imports neither search, train nor model code.
"""

from autotransfer.contract.manager import add_default_plugin
from autotransfer.data import modality
from autotransfer.data._audio import AudioPreprocess, load_audio
from autotransfer.data._images import (
    AUGMENTATIONS,
    ImagePreprocess,
    augment,
    image_tensors,
    load_image,
    open_image,
    to_rgb,
)
from autotransfer.data._text import TextPreprocess, read_text_table
from autotransfer.data.batching import iterate_batches, take
from autotransfer.data.checks import CheckReport, check_audio, check_data, check_images
from autotransfer.data.dataset import DataWarning, LabelledData, Split
from autotransfer.data.duplicates import cross_split_duplicates, warn_cross_split_duplicates
from autotransfer.data.files import is_junk, walk_files
from autotransfer.data.labels import normalize_label, sort_classes
from autotransfer.data.load import check_source, detect_modality, load_data
from autotransfer.data.splits import stratified_split

# The builtin modalities are the core's default plugin of the ``register_modalities`` hook: the
# data layer offers them to the plugin manager below it, so no layer names one above it.
add_default_plugin(modality, "autotransfer.data.modality")

__all__ = [
    "AUGMENTATIONS",
    "AudioPreprocess",
    "CheckReport",
    "DataWarning",
    "ImagePreprocess",
    "LabelledData",
    "Split",
    "TextPreprocess",
    "augment",
    "check_audio",
    "check_data",
    "check_images",
    "cross_split_duplicates",
    "detect_modality",
    "image_tensors",
    "is_junk",
    "iterate_batches",
    "load_audio",
    "check_source",
    "load_data",
    "load_image",
    "normalize_label",
    "open_image",
    "read_text_table",
    "sort_classes",
    "stratified_split",
    "take",
    "to_rgb",
    "walk_files",
    "warn_cross_split_duplicates",
]
