"""Results: what a search ends with and how it is shown.

- ``report``: the leaderboard, ``best.yaml``, ``report.md`` and its plots;
- ``front_plots``: the Pareto front plot;
- ``backbone_plot``: the score of each backbone's trials with 95% intervals, on a 0-1 axis;
- ``ensemble``: the ensemble of the study's own trials (best.yaml's ``ensemble`` section, its
  leaderboard row and console line), from their kept predictions;
- ``soup``: the greedy weight soup of the study's own trials (best.yaml's ``soup`` section, its
  leaderboard row and console line), from their kept weights;
- ``kept_weights``: the trials' weights kept for the soup, bounded per backbone and method;
- ``intervals``: 95% intervals and the rule that picks among indistinguishable trials;
- ``scores``: per-class scores, the confusion matrix, divergence and chance level;
- ``dashboard``: the study's note for optuna-dashboard;
- ``artifacts``: ``--keep-best``, the best trial's model kept as an Optuna artifact;
- ``evaluation``: ``autotransfer evaluate``, an exported model scored on labelled data.
"""
