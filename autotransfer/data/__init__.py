"""Readers for the user's labelled data, splits, and batching."""

from autotransfer.data._images import (
    AUGMENTATIONS,
    ImagePreprocess,
    augment,
    check_images,
    image_tensors,
    iterate_batches,
    load_image,
    to_rgb,
)
from autotransfer.data._source import (
    IMAGE_SUFFIXES,
    DataWarning,
    LabelledData,
    Split,
    cross_split_duplicates,
    load_data,
    stratified_split,
    warn_cross_split_duplicates,
)

__all__ = [
    "AUGMENTATIONS",
    "DataWarning",
    "cross_split_duplicates",
    "warn_cross_split_duplicates",
    "IMAGE_SUFFIXES",
    "ImagePreprocess",
    "LabelledData",
    "Split",
    "augment",
    "check_images",
    "image_tensors",
    "iterate_batches",
    "load_data",
    "load_image",
    "stratified_split",
    "to_rgb",
]
