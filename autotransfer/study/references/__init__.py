"""References: what the search bought, measured against trials that need no search.

- ``trials``: the reference trials (linear probe, first fine-tune) and the transfer effect;
- ``order``: the order they run in (promise, then measured cost);
- ``queue``: references held back until the linear probes have scored;
- ``share``: the references' share of a time budget.
"""
