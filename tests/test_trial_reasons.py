"""A trial's recorded reason keeps its hint, however long the library's message before it."""

from autotransfer.contract.hub import load_error
from autotransfer.study.objective import REASON_LIMIT, describe


def test_a_long_reason_keeps_its_hint():
    """A hub error whose library message runs 200 characters ends with the offline hint: the
    recorded reason (once cut at about 315 characters) keeps it."""
    inner = OSError("We couldn't connect to 'https://huggingface.co' to load the files, and "
                    "couldn't find them in the cached files. " + "x" * 180)
    reason = describe(load_error("org/some-model-with-a-long-name", "hf", inner))
    assert reason.startswith("BackboneError: org/some-model-with-a-long-name: could not load")
    assert reason.endswith("offline, give a local directory saved with save_pretrained: hf/PATH")
    huge = describe(ValueError("y" * 5000 + " -- the hint"))
    assert len(huge) <= REASON_LIMIT + len("ValueError: ") and huge.endswith("-- the hint")
    assert " … " in huge
