"""Contract: what a zoo and the core agree on (the plugin contract).

- ``hookspecs``: the hooks a plugin implements (pluggy project ``autotransfer``);
- ``manager``: the plugin manager (builtins, entry points, lazy run-once loading);
- ``collect``: what the loaded plugins offer, gathered through their hooks on first use;
- ``backbone``: ``Backbone``, ``BackboneEntry``, ``Preprocess``;
- ``registry``: the registry of backbone ids;
- ``formats``: native model formats (save and load back);
- ``modalities``: the ``Modality`` type;
- ``strategies``: the ``Strategy`` type (a pruner or sampler a plugin offers to spaces);
- ``recipes``: the ``Recipe`` type (a training recipe a plugin offers to spaces);
- ``ranking``: ``RankingEntry`` (a zoo's candidate metadata) and the ranker ``rank``;
- ``groups``: layer groups in timm's ``group_matcher`` format;
- ``stages``: stages of a body, so that a frozen prefix runs once;
- ``hub``: zoos whose ids name a hub repository or a local ``save_pretrained`` directory;
- ``hub_ranking``: the Hugging Face Hub's metadata (downloads, parameters, licence) as ranking
  entries of those zoos, asked only online.

May import: ``autotransfer.errors`` and public libraries only; it is the bottom layer
(cli > study, model > finetune > data > space > contract). Plugin authors import it through
``autotransfer.plugin``. The search-space schema is :mod:`autotransfer.space`.
"""
