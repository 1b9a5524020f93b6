"""Readers for the user's labelled data (images, audio, text), splits, and batching."""

from autotransfer.data._audio import AudioPreprocess, check_audio, load_audio
from autotransfer.data._images import (
    AUGMENTATIONS,
    ImagePreprocess,
    augment,
    check_images,
    image_tensors,
    iterate_batches,
    load_image,
    take,
    to_rgb,
)
from autotransfer.data._source import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    TEXT_SUFFIXES,
    DataWarning,
    LabelledData,
    Split,
    cross_split_duplicates,
    detect_modality,
    load_data,
    stratified_split,
    warn_cross_split_duplicates,
)
from autotransfer.data._text import TextPreprocess, read_text_table


def check_data(data: LabelledData) -> None:
    """Open every file of an image or audio dataset once, so that a bad one fails early."""
    if data.modality == "image":
        check_images(data)
    elif data.modality == "audio":
        check_audio(data)


__all__ = [
    "AUDIO_SUFFIXES",
    "AUGMENTATIONS",
    "DataWarning",
    "cross_split_duplicates",
    "warn_cross_split_duplicates",
    "IMAGE_SUFFIXES",
    "TEXT_SUFFIXES",
    "AudioPreprocess",
    "ImagePreprocess",
    "LabelledData",
    "Split",
    "TextPreprocess",
    "augment",
    "check_audio",
    "check_data",
    "check_images",
    "detect_modality",
    "image_tensors",
    "iterate_batches",
    "load_audio",
    "load_data",
    "load_image",
    "read_text_table",
    "stratified_split",
    "take",
    "to_rgb",
]
