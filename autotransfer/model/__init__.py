"""Model: the artefacts a search leads to.

Owns refitting the best configuration (``refit``, the API's ``autotransfer.train``), native
export and load-back of a model directory (``export``), the Hugging Face format shared by the text
and audio zoos (``hf_format``), rebuilding an exported model around its body (``saved_head``) and
prediction with it (``predict``, the API's ``autotransfer.predict``); the ensemble of a search's
trials refit member by member into one folder and predicted as their weighted average
(``ensemble``, ``train --ensemble``) and the greedy weight soup of the trials that share the
pick's backbone and method (``soup``, ``train --soup``); the ONNX export beside the
native one (``onnx_export``), its checks against PyTorch and latencies (``onnx_checks``) and
prediction with ONNX Runtime alone (``onnx_predict``).

May import: ``autotransfer.finetune``, ``autotransfer.data``, ``autotransfer.contract``,
``autotransfer.errors`` and public libraries; never search or cli.
"""
