"""Ctrl-C as a request to stop at the next safe point, not wherever the signal lands."""

from __future__ import annotations

import signal
import threading

from emda.errors import EmdaError


class Interrupted(EmdaError):
    exit_code = 130  # the shell's convention for a SIGINT


class StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after its current step (a training
    iteration, a predicted slice), so that what is saved is consistent; a second one
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
