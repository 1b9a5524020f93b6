"""The plugin author's API: everything a zoo may import from autotransfer, in one module.

A zoo (a pluggy plugin of the project ``autotransfer``) imports this module and public
libraries only; the builtin zoos in ``plugins/`` do the same, and ``make lint`` checks it
(import-linter). The contract itself is documented in ``docs/plugins/index.md``::

    from autotransfer.plugin import Backbone, BackboneEntry, ImagePreprocess, group_names, hookimpl

    @hookimpl
    def register_backbones(register):
        register(BackboneEntry(id="myzoo/tiny", modality="image", loader=load_tiny))

What is here, by the contract's parts:

- hooks: :data:`hookimpl` (the hook specs are in :mod:`autotransfer.contract.hookspecs`);
- a new kind of input (hook ``register_modalities``): :class:`Modality`, and the folder reader
  :func:`read_files` (class folders, split folders, ``path,label`` tables) with its
  :class:`ReadResult`;
- what a zoo registers and returns: :class:`BackboneEntry` (or a lazy
  :class:`BackboneCatalogue` of them), :class:`Backbone`, the
  :class:`Preprocess` protocol and the three preprocessors of the data layer;
- layer groups (timm's ``group_matcher`` format): :func:`group_names`, :data:`MATCH_PREV_GROUP`;
- a body cut into stages for the frozen-prefix cache: :class:`Stage`, :func:`sequential_split`;
- Hugging Face Hub ids and local ``save_pretrained`` directories: a zoo's skeleton
  :class:`HubZoo` (its catalogue and hooks; with a :class:`HubQuery`, the Hub's metadata
  ranked online), :func:`import_transformers`,
  :func:`hub_entry`, :func:`served_name`, :func:`hub_source`, :func:`load_error`, a Hub
  repository's ranking entry :func:`entry_of` from :func:`hub_infos`; what
  loaded checked: :func:`check_loaded` (weights that fit), :func:`check_tokenizer` (a real
  vocabulary);
- native model formats (hook ``register_model_formats``): :class:`ModelFormat`,
  :class:`TransferModel` (body then linear head, what a format saves and loads),
  :func:`check_same_output`, :func:`save_linear_head`, :func:`load_linear_head`,
  :func:`model_with_saved_head`, and the Hugging Face format of the text and audio zoos,
  :func:`transformers_format`;
- a pruner or sampler that a search space names (hook ``register_strategies``):
  :class:`Strategy`;
- a new validation metric or measured cost: :class:`Objective` and
  :func:`register_objective` (:mod:`autotransfer.space.objectives`);
- tuning methods (hook ``register_methods``): :class:`TuningMethod` and the
  :func:`selective` helper (loaded on first use: they need torch);
- training recipes that a search space names (hook ``register_recipes``): :class:`Recipe`,
  and what a recipe subclasses, :class:`TrainingRecipe`, :class:`Supervised` and its
  :class:`Batch` (loaded on first use: they need torch);
- errors: :class:`BackboneError`, :class:`PluginError`, :func:`first_line`.

Tests of a zoo use :mod:`autotransfer.testing` (``check_backbone``, fakes).
"""

from typing import TYPE_CHECKING

from autotransfer.contract.backbone import (
    Backbone,
    BackboneCatalogue,
    BackboneEntry,
    Preprocess,
)
from autotransfer.contract.collect import get_backbone
from autotransfer.contract.formats import (
    ModelFormat,
    check_same_output,
    load_linear_head,
    save_linear_head,
)
from autotransfer.contract.groups import MATCH_PREV_GROUP, group_names
from autotransfer.contract.hookspecs import hookimpl
from autotransfer.contract.hub import (
    HubZoo,
    check_loaded,
    check_tokenizer,
    hub_entry,
    import_transformers,
    load_error,
    served_name,
)
from autotransfer.contract.hub import source as hub_source
from autotransfer.contract.hub_ranking import HubQuery, entry_of, hub_infos
from autotransfer.contract.modalities import Modality
from autotransfer.contract.ranking import RankingEntry
from autotransfer.contract.recipes import Recipe
from autotransfer.contract.strategies import Strategy
from autotransfer.data import AudioPreprocess, ImagePreprocess, TextPreprocess
from autotransfer.data.dataset import ReadResult
from autotransfer.data.folders import read_files
from autotransfer.errors import BackboneError, PluginError, first_line
from autotransfer.model.hf_format import transformers_format
from autotransfer.model.saved_head import model_with_saved_head
from autotransfer.space.objectives import Objective, register_objective

if TYPE_CHECKING:
    from autotransfer.contract.stages import Stage, sequential_split
    from autotransfer.finetune.methods import TuningMethod, selective
    from autotransfer.finetune.recipe import Batch, Supervised, TrainingRecipe
    from autotransfer.finetune.trainer import TransferModel

__all__ = [
    "MATCH_PREV_GROUP",
    "AudioPreprocess",
    "Backbone",
    "BackboneCatalogue",
    "BackboneEntry",
    "BackboneError",
    "Batch",
    "HubQuery",
    "HubZoo",
    "ImagePreprocess",
    "Modality",
    "ModelFormat",
    "Objective",
    "PluginError",
    "Preprocess",
    "RankingEntry",
    "ReadResult",
    "Recipe",
    "Stage",
    "Strategy",
    "Supervised",
    "TextPreprocess",
    "TrainingRecipe",
    "TransferModel",
    "check_loaded",
    "TuningMethod",
    "check_same_output",
    "check_tokenizer",
    "first_line",
    "get_backbone",
    "group_names",
    "hookimpl",
    "entry_of",
    "hub_entry",
    "hub_infos",
    "hub_source",
    "import_transformers",
    "load_error",
    "load_linear_head",
    "model_with_saved_head",
    "read_files",
    "register_objective",
    "save_linear_head",
    "selective",
    "sequential_split",
    "served_name",
    "transformers_format",
]

#: Loaded on first use: they need torch, and importing a zoo must not (start-up of
#: ``autotransfer plugins``, ``backbones`` and ``--help``).
_LAZY = {**dict.fromkeys(("Stage", "sequential_split"), "autotransfer.contract.stages"),
         "TransferModel": "autotransfer.finetune.trainer",
         **dict.fromkeys(("Batch", "Supervised", "TrainingRecipe"), "autotransfer.finetune.recipe"),
         **dict.fromkeys(("TuningMethod", "selective"), "autotransfer.finetune.methods")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autotransfer.plugin' has no attribute {name!r}")
