"""What a search tells its watcher: the :class:`Progress` protocol (the CLI's ``ConsoleProgress``
implements it). A leaf, so that the study and the objective both name it without importing each
other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from autotransfer.finetune.trainer import EpochResult


class Progress(Protocol):
    """Receives the live view of a search: trials, and the epochs of the running trial."""

    def trial_started(self, number: int, backbone: str, params: dict[str, Any]) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_done(self, number: int, state: str, value: float | None, reason: str) -> None: ...
    def note(self, number: int, message: str) -> None: ...
