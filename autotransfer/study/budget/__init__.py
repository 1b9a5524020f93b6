"""Budget: how a study spends its time and which trials it starts and stops.

- ``timebudget``: the run-wide time budget (``--time-budget``), its deadline and grace;
- ``rungs``: the space's pruner fitted to the trials a study can expect;
- ``cost_aware``: among backbones of similar promise, the cheaper one starts first;
- ``infeasible``: backbones known to break the ``params`` bound are not drawn again;
- ``backbone_cost``: each backbone's cost, measured once per study (the timed step);
- ``prior``: the device-aware prior, each candidate's latency on this device before any trial;
- ``measure``: a trial's costs (params, latency, size) and its bounds;
- ``pruners``: the study's pruner and sampler, built from the space;
- ``rules``: trial control, the ordered start and epoch rules (time left, the references'
  share, the floor's grace, a stop signal, divergence, the pruner).
"""
