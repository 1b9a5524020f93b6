"""Study: the Optuna study over backbones and hyperparameters.

Modules at this level:

- ``study``: the search (``search`` = prepare -> run -> write results);
- ``options``: ``SearchOptions``, the validated options of a search;
- ``objective``: a trial's objective (build, fine-tune, record);
- ``selection``: the one place that says which trial is best;
- ``workers``: the trial loop every worker runs, and local worker processes;
- ``warm_start``: preparing a study (pre-screen, warm start, history);
- ``prescreen``: the transferability pre-screen on frozen features;
- ``loadable``: the backbones that load here, before the first trial (the others skipped);
- ``checks``: checks made before anything heavy loads;
- ``ranked``: a ranked space (``backbones: {rank: N, ...}``) expanded into ids at creation;
- ``progress``: the ``Progress`` protocol the CLI implements.

Sub-packages, by concern:

- ``budget``: time budget, rungs, cost-aware starts, each backbone's measured cost, a trial's
  costs, the study's pruner and sampler, and the start and epoch rules of trial control;
- ``references``: reference trials (linear probes, defaults), their order, queue and share;
- ``results``: the report and ``best.yaml``, plots, intervals, scores, the dashboard note and
  kept models;
- ``store``: storage URLs, SQLite files, migrations, the transfer history, lost trials;
- ``trackers``: MLflow and Weights & Biases.

May import: ``autotransfer.model``, ``autotransfer.finetune``, ``autotransfer.data``,
``autotransfer.space``, ``autotransfer.contract``, ``autotransfer.errors`` and public libraries;
never cli.

The user API ``autotransfer.search(data, space, ...)`` is :func:`autotransfer.study.study.search`
(the package is named like optuna's ``optuna/study/``, so that the function keeps its name).
"""
