"""Space: the search-space schema, what a space YAML may say and how it is validated, and the
typed result a search ends with.

- ``schema``: search-space YAML -> validated ``SearchSpace`` -> ``trial.suggest_*`` calls;
- ``yaml_file``: a space file's YAML read as its author meant (YAML 1.2 numbers, keys given
  twice refused, the line of each key) and its problems as lines;
- ``hyperparameters``: the hyperparameters a space may name (defaults, ranges, help);
- ``first_finetune``: the first fine-tune of each backbone family (the ``default`` reference);
- ``methods``: the tuning methods a space may choose, and their hyperparameters;
- ``method_names``: the names the ``method`` hyperparameter accepts (a leaf);
- ``objectives``: what a search can optimise or bound, and how each is obtained;
- ``result``: ``best.yaml`` as one typed model (what a search writes, ``train`` reads);
- ``budget``: the ``budget`` key (how a small budget is spent);
- ``ensemble``: the ``ensemble`` key (the ensemble of the study's trials built after it);
- ``soup``: the ``soup`` key (trials keep their weights; the greedy soup built after it);
- ``strategies``: pruners and samplers as named in a space;
- ``recipes``: the training recipe a space names (``recipe``), checked without torch;
- ``factories``: what the three read alike: a name, a name with settings, or an import path;
- ``defaults``: the default space of each modality (package data ``defaults/*.yaml``).

May import: ``autotransfer.contract``, ``autotransfer.errors`` and public libraries.
"""
