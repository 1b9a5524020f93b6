"""Contract: what a zoo and the core agree on.

Owns the hook specs (``hookspecs``), ``Backbone`` / ``BackboneEntry`` / ``Preprocess``
(``backbone``), the registry of backbone ids (``registry``), the pluggy plugin manager
(``manager``), the collectors that fill the registry and the formats from the hooks
(``collect``), layer groups in timm's ``group_matcher`` format (``groups``), stages for a frozen
prefix (``stages``), the hyperparameters (``hyperparameters``), the search-space schema
(``space``) and Hugging Face Hub id helpers (``hub``).

May import: ``autotransfer.errors`` and public libraries only; it is the bottom layer
(cli > search, model > train > data > contract). Plugin authors import it through
``autotransfer.plugin``.
"""
