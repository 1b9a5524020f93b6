"""Store: where a study lives.

- ``storage``: storage URLs, password masking, Optuna's RDB storage, the study-wide lock;
- ``journal``: Optuna's journal file storage (``journal:///path``), with heartbeats;
- ``sqlite_files``: an existing SQLite file is looked at, read-only, before Optuna touches it;
- ``migrations``: named migrations of the history tables;
- ``history``: the transfer history of every finished trial, for warm starts;
- ``lost_trials``: trials left RUNNING by a worker that is gone;
- ``outage``: a database server that goes away for a while (calls retried), or has too few
  connections for the workers.
"""
