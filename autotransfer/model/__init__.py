"""Model: the artefacts a search leads to.

Owns refitting the best configuration (``refit``, the API's ``autotransfer.train``), native
export and load-back of a model directory (``export``) and prediction with it (``predict``, the
API's ``autotransfer.predict``).

May import: ``autotransfer.finetune``, ``autotransfer.data``, ``autotransfer.contract``,
``autotransfer.errors`` and public libraries; never search or cli.
"""
