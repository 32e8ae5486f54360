"""Signals collected synchronously, as tini does with sigtimedwait: the handlers only exist so
that Python writes each signal's number to a wakeup pipe; the event loop reads and acts."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from typing import Any


class SignalInbox:
    """Catches `handled` signals into a pipe and ignores `ignored` ones, until `close()`."""

    def __init__(self, handled: Iterable[int], ignored: Iterable[int] = ()) -> None:
        # os.pipe() fds are close-on-exec (PEP 446); pipe2 would be Linux-only.
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        self._old_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old: dict[int, Any] = {}
        for sig in handled:
            self._old[sig] = signal.signal(sig, _noop_handler)
        for sig in ignored:
            self._old[sig] = signal.signal(sig, signal.SIG_IGN)

    def read(self) -> bytes:
        """The numbers of the signals received since the last read, in order."""
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        """Restore the previous handlers and wakeup fd."""
        for sig, handler in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self.fd, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _noop_handler(signum: int, frame: object) -> None:
    """Signals are read from the wakeup pipe by the loop; the handler only has to exist."""
    del signum, frame
