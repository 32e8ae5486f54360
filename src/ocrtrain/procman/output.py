"""Output of a supervised run: every byte to the run's log, and a best-effort copy to the
terminal that never blocks the child.

Where the kernel allows it the bytes never pass through Python: for each of the child's pipes
a PipeMover thread tee(2)s what arrived into the terminal copy's pipe and splice(2)s it into
the log file, and a writer thread splices the copy on to the terminal. A pty (interactive runs)
is read and written the ordinary way, from the event loop. The terminal copy is a pipe of
bounded size, so a slow reader (a paused terminal, a pipe nobody drains) costs dropped terminal
output, counted and announced, never a blocked child or unbounded supervisor memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import select
import signal
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_BUFFER_BYTES = 4 * 1024 * 1024  # the terminal copy's pipe, when the kernel allows it
CHILD_PIPE_BYTES = 1024 * 1024  # the child's stdout/stderr pipes: fewer wakeups per MiB
READ_CHUNK = 65536
BATCH_S = 0.002  # the longest a trickle of output waits to be moved with more
DRAIN_S = 5.0  # at the end: how long a pipe may stay open (held by a survivor)
SPLICE_CHUNK = 1 << 30  # splice moves at most what the pipe holds
SPLICE_F_NONBLOCK = 2
_PIPE_MAX_SIZE = "/proc/sys/fs/pipe-max-size"

TeeFn = Callable[[int, int, int, int], int]


def _load_tee() -> TeeFn | None:
    """libc's tee(2) (Python has splice but no tee), or None where there is none."""
    if not sys.platform.startswith("linux") or not hasattr(os, "splice"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).tee
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    fn.restype = ctypes.c_ssize_t
    return fn


_TEE = _load_tee()


def can_splice() -> bool:
    """Whether pipes can be copied and moved inside the kernel here (tee and splice)."""
    return _TEE is not None


def tee(src: int, dst: int, count: int, *, block: bool = False) -> int:
    """Duplicate up to `count` bytes at the head of pipe `src` into pipe `dst` without
    consuming them; 0 when `src` is empty and has no writer left.

    Raises:
        BlockingIOError: not `block`, and `dst` is full (or `src` empty).
        OSError: tee(2) failed otherwise.
    """
    assert _TEE is not None
    while True:
        n = _TEE(src, dst, count, 0 if block else SPLICE_F_NONBLOCK)
        if n >= 0:
            return int(n)
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def pipe_pending(fd: int) -> int:
    """Bytes waiting in a pipe."""
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def set_pipe_size(fd: int, size: int) -> int:
    """Grow a pipe to `size` bytes, or to the largest size allowed here; returns its size."""
    with contextlib.suppress(OSError):
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    try:
        with open(_PIPE_MAX_SIZE, encoding="ascii") as f:
            limit = int(f.read())
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(size, limit))
    except (OSError, ValueError):
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # the default works, with more wakeups


class LogFile:
    """The run's complete output log: every byte, written or spliced in arrival order."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Not O_APPEND: splice(2) refuses append-mode files. The supervisor is the only writer,
        # but from two threads (stdout's and stderr's): splice(2) reads and moves the file
        # offset without the kernel's position lock, so two at once overwrite each other.
        # Each write or splice holds `_lock`.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.bytes_written = 0
        self._failed = False
        self._splice = True
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            view = memoryview(data)
            with self._lock:
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
                self.bytes_written += len(data)
        except OSError as exc:
            self._fail(exc)

    def splice_from(self, src: int, count: int) -> None:
        """Move `count` bytes, which the pipe `src` holds, into the log (or discard them once
        the log has failed: they must leave the pipe either way)."""
        while count > 0:
            if self._failed or not self._splice:
                data = os.read(src, min(count, READ_CHUNK))
                self.write(data)
                count -= len(data)
                continue
            try:
                with self._lock:
                    n = os.splice(src, self.fd, count)
                    self.bytes_written += n
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # a file system without splice: copy instead
                    self._splice = False
                else:
                    self._fail(exc)
                continue
            if n == 0:
                return
            count -= n

    def _fail(self, exc: OSError) -> None:
        # A full disk must not take the run down: keep the child going, say so once.
        self._failed = True
        log.warning("writing the run log %s failed: %s; output is no longer logged", self.path, exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class TerminalCopy:
    """A best-effort copy of output to one file descriptor (the user's terminal or pipe).

    The supervisor feeds a pipe of bounded size without ever blocking; a writer thread moves
    the pipe's contents to `fd` at the reader's pace. What does not fit is dropped, counted,
    and announced in the copy before the next bytes that do fit.
    """

    def __init__(self, fd: int, limit: int = DEFAULT_BUFFER_BYTES, name: str = "stdout") -> None:
        self.fd = fd
        self.total_dropped = 0
        self._unannounced = 0
        self._r, self._w = os.pipe()
        set_pipe_size(self._w, limit)
        os.set_blocking(self._w, False)
        self._broken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ocrtrain-{name}", daemon=True)
        self._thread.start()

    def tee_from(self, src: int, count: int) -> int:
        """Copy up to `count` bytes at the head of pipe `src`; returns how many were copied
        (0 when the copy is full and those bytes are dropped, or when it is broken)."""
        if self._broken.is_set():
            return 0
        if not self._announce():
            self._drop(count)
            return 0
        try:
            return tee(src, self._w, count)
        except BlockingIOError:
            self._drop(count)
            return 0

    def write(self, data: bytes) -> None:
        """Queue `data`; what does not fit is dropped (and counted)."""
        if self._broken.is_set():
            return
        if not self._announce():
            self._drop(len(data))
            return
        try:
            n = os.write(self._w, data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            self._drop(len(data) - n)

    def _drop(self, count: int) -> None:
        self._unannounced += count
        self.total_dropped += count

    def _announce(self) -> bool:
        """Queue the notice of dropped bytes, if any; False when it does not fit yet."""
        if not self._unannounced:
            return True
        notice = (
            f"\r\n[ocrtrain: {self._unannounced} bytes of output were not shown here "
            f"(slow reader); the run's log has everything]\r\n"
        ).encode()
        try:
            os.write(self._w, notice)  # shorter than PIPE_BUF: all or nothing
        except BlockingIOError:
            return False
        self._unannounced = 0
        return True

    def _run(self) -> None:
        spliced = True
        while True:
            try:
                n = os.splice(self._r, self.fd, SPLICE_CHUNK) if spliced else self._copy_chunk()
            except BlockingIOError:  # the destination was left non-blocking by someone
                self._wait_writable()
                continue
            except OSError as exc:
                if spliced and exc.errno == errno.EINVAL:  # no splice to this file: copy
                    spliced = False
                    continue
                if exc.errno not in (errno.EPIPE, errno.EIO, errno.EBADF):
                    log.warning("writing run output to fd %d failed: %s", self.fd, exc)
                self._broken.set()
                return
            if n == 0:
                return

    def _copy_chunk(self) -> int:
        data = os.read(self._r, READ_CHUNK)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                self._wait_writable()
        return len(data)

    def _wait_writable(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        poller.poll(10)

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued, waiting at most `timeout` seconds for a slow reader."""
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._w, select.POLLOUT)
        while not self._broken.is_set() and not self._announce():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            poller.poll(min(left, 0.1) * 1000)
        os.close(self._w)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            os.close(self._r)


class PipeMover:
    """Moves one of the child's pipes into the log and its terminal copy, from a thread.

    The pipe is never polled: once a pipe has been polled, Linux wakes its pollers on every
    write, which costs a child printing line by line about a fifth more CPU. The thread blocks
    in a one-byte tee(2) into a scratch pipe instead, then moves all that has arrived; after a
    small move it waits BATCH_S so that a trickle of lines moves in one go.
    """

    def __init__(self, fd: int, copy: TerminalCopy | None, logfile: LogFile, name: str) -> None:
        self.fd = fd
        self.copy = copy
        self._log = logfile
        os.set_blocking(fd, True)
        self._size = set_pipe_size(fd, CHILD_PIPE_BYTES)
        self._thread = threading.Thread(target=self._run, name=f"ocrtrain-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Signals are the event loop's: none may interrupt this thread.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        probe_r, probe_w = os.pipe()
        try:
            while self._wait(probe_r, probe_w):
                moved = self._move()  # the log takes one write or splice at a time
                if moved < self._size // 4:
                    time.sleep(BATCH_S)
        except OSError as exc:
            log.warning("moving run output without copies failed (%s); reading it instead", exc)
            self._read_to_end()
        finally:
            os.close(probe_r)
            os.close(probe_w)

    def _wait(self, probe_r: int, probe_w: int) -> bool:
        """Block until the pipe holds data (True) or has no writer left (False)."""
        if tee(self.fd, probe_w, 1, block=True) == 0:
            return False
        os.read(probe_r, 64)
        return True

    def _move(self) -> int:
        pending = pipe_pending(self.fd)
        copied = self.copy.tee_from(self.fd, pending) if self.copy is not None else 0
        moved = copied or pending
        self._log.splice_from(self.fd, moved)
        return moved

    def _read_to_end(self) -> None:
        while data := os.read(self.fd, READ_CHUNK):
            self._log.write(data)
            if self.copy is not None:
                self.copy.write(data)

    def join(self, timeout: float) -> bool:
        """Wait for the end of the stream; False if it has not come within `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


class RunOutput:
    """The run's output streams, each moved to the log and to its terminal copy: the child's
    pipes by PipeMovers, a pty master (or any stream where the kernel cannot splice) by the
    event loop through `pump`."""

    def __init__(self, logfile: LogFile, on_end: Callable[[int], object] | None = None) -> None:
        self.log = logfile
        self._on_end = on_end  # told about a polled fd at its end of stream, before closing it
        self._polled: dict[int, TerminalCopy | None] = {}
        self._movers: list[PipeMover] = []
        self._copies: list[TerminalCopy] = []

    def copy_to(self, fd: int | None, name: str) -> TerminalCopy | None:
        """A terminal copy to `fd`, or None when there is no such destination."""
        if fd is None:
            return None
        return TerminalCopy(fd, name=name)

    def add(self, fd: int, copy: TerminalCopy | None, *, pipe: bool, name: str = "out") -> bool:
        """Take over `fd`, the read end of the child's pipe (`pipe`) or a pty master.

        Returns True when the caller must `pump(fd)` whenever `fd` is readable; a pipe where
        the kernel can splice moves by itself.
        """
        if copy is not None:
            self._copies.append(copy)
        if pipe and can_splice():
            self._movers.append(PipeMover(fd, copy, self.log, name))
            return False
        os.set_blocking(fd, False)
        self._polled[fd] = copy
        return True

    @property
    def terminal_bytes_dropped(self) -> int:
        return sum(copy.total_dropped for copy in self._copies)

    def pump(self, fd: int) -> bool:
        """Move what is waiting on a polled `fd`; False (and `fd` closed) at its end."""
        return self._read(fd) >= 0

    def drain(self, timeout: float = DRAIN_S) -> None:
        """Move what is left once every process of the run is gone (waiting at most
        `timeout` seconds for pipes that a survivor still holds open)."""
        for fd in list(self._polled):
            while fd in self._polled and self._read(fd) > 0:
                pass
        deadline = time.monotonic() + timeout
        for mover in self._movers:
            if not mover.join(max(0.0, deadline - time.monotonic())):
                log.warning("run output on fd %d did not end; its writer survived", mover.fd)

    def _read(self, fd: int) -> int:
        """Bytes moved from `fd` (0: none waiting), or -1 at the end of the stream."""
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's last slave closed
                log.warning("reading run output failed: %s", exc)
            data = b""
        if not data:
            if self._on_end is not None:
                self._on_end(fd)
            del self._polled[fd]
            os.close(fd)
            return -1
        self.log.write(data)
        copy = self._polled[fd]
        if copy is not None:
            copy.write(data)
        return len(data)

    def close(self) -> None:
        for copy in self._copies:
            copy.close()
        self.log.close()
        for fd in self._polled:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._polled.clear()
        for mover in self._movers:
            if mover.join(0):  # a mover still waiting keeps its fd
                with contextlib.suppress(OSError):
                    os.close(mover.fd)
        self._movers.clear()
