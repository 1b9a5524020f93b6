"""The user's labelled data: one file discovery, one decoder per modality, checks, splits.

- :mod:`~autotransfer.data.files`: finding files (junk ignored, symlinks followed, unused named);
- :mod:`~autotransfer.data.modality`: the modality registry and detection;
- :mod:`~autotransfer.data.tables`: CSV / TSV / JSONL through the csv and json modules;
- :mod:`~autotransfer.data.labels`: label normalisation and class order;
- :mod:`~autotransfer.data.checks`: the checks before trial 1, in one report;
- :mod:`~autotransfer.data.inspect`: what a search would read, without training.

Imports neither search, train nor model code.
"""

from autotransfer.data._audio import AudioPreprocess, check_audio, load_audio
from autotransfer.data._images import (
    AUGMENTATIONS,
    ImagePreprocess,
    augment,
    check_images,
    image_tensors,
    iterate_batches,
    load_image,
    open_image,
    take,
    to_rgb,
)
from autotransfer.data._source import (
    TEXT_SUFFIXES,
    DataWarning,
    LabelledData,
    Split,
    check_source,
    cross_split_duplicates,
    detect_modality,
    load_data,
    stratified_split,
    warn_cross_split_duplicates,
)
from autotransfer.data._text import TextPreprocess, read_text_table
from autotransfer.data.checks import CheckReport, check_data
from autotransfer.data.files import is_junk, walk_files
from autotransfer.data.labels import normalize_label, sort_classes
from autotransfer.data.modality import Modality, get_modality, register_modality

#: suffixes the image decoder (Pillow) and the audio decoder (libsndfile) read
IMAGE_SUFFIXES = get_modality("image").suffixes
AUDIO_SUFFIXES = get_modality("audio").suffixes

__all__ = [
    "AUDIO_SUFFIXES",
    "AUGMENTATIONS",
    "IMAGE_SUFFIXES",
    "TEXT_SUFFIXES",
    "AudioPreprocess",
    "CheckReport",
    "DataWarning",
    "ImagePreprocess",
    "LabelledData",
    "Modality",
    "Split",
    "TextPreprocess",
    "augment",
    "check_audio",
    "check_data",
    "check_images",
    "cross_split_duplicates",
    "detect_modality",
    "get_modality",
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
    "register_modality",
    "sort_classes",
    "stratified_split",
    "take",
    "to_rgb",
    "walk_files",
    "warn_cross_split_duplicates",
]
