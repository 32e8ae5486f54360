"""Output fan-out for a supervised run: every byte to the run's log, and a best-effort copy to
the terminal that never blocks the child.

The supervisor reads the child's output as fast as it is produced. The log gets everything;
each terminal destination is fed by its own thread through a bounded buffer, so a slow reader
(a paused terminal, a pipe nobody drains) costs dropped terminal output, never a blocked child
or unbounded supervisor memory.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024


class TerminalSink:
    """A writer thread for one file descriptor, fed through a bounded queue."""

    def __init__(self, fd: int, limit: int = DEFAULT_BUFFER_BYTES, name: str = "stdout") -> None:
        self.fd = fd
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._dropped = 0
        self.total_dropped = 0
        self._broken = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"ocrtrain-{name}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Queue `data`; drop it (and count it) if the buffer is full or the reader is gone."""
        with self._cond:
            if self._broken:
                return
            if self._size + len(data) > self.limit:
                self._dropped += len(data)
                self.total_dropped += len(data)
                return
            self._flush_notice()
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify()

    def _flush_notice(self) -> None:
        """Queue a line saying how much was dropped since the last one (lock held)."""
        if self._dropped:
            notice = (
                f"\r\n[ocrtrain: {self._dropped} bytes of output were not shown here "
                f"(slow reader); the run's log has everything]\r\n"
            ).encode()
            self._chunks.append(notice)
            self._size += len(notice)
            self._dropped = 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._chunks and not self._closing:
                    self._cond.wait()
                if not self._chunks and self._closing:
                    return
                data = self._chunks.popleft()
                self._size -= len(data)
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self.fd, view)
                except InterruptedError:
                    continue
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                        log.warning("writing run output to fd %d failed: %s", self.fd, exc)
                    with self._cond:
                        self._broken = True
                        self._chunks.clear()
                        self._size = 0
                    return
                view = view[n:]

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued, waiting at most `timeout` seconds for a slow reader."""
        with self._cond:
            if not self._broken:
                self._flush_notice()
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)


class LogFile:
    """The run's complete output log (append-only, unbuffered writes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.bytes_written = 0
        self._failed = False

    def write(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            self.bytes_written += len(data)
        except OSError as exc:
            # A full disk must not take the run down: keep the child going, say so once.
            self._failed = True
            log.warning(
                "writing the run log %s failed: %s; output is no longer logged", self.path, exc
            )

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
