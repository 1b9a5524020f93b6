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
    LabelledData,
    Split,
    load_data,
    stratified_split,
)

__all__ = [
    "AUGMENTATIONS",
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
