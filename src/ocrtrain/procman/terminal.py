"""The child's standard streams: a pty of its own when the user's stdout is a terminal, pipes
otherwise; the window size and typed input passed on to the pty.

The child leads its own session, so it cannot share the user's terminal as its controlling
terminal. A pty keeps what a terminal gives a program: `isatty()`, line buffering, colours,
the window size and SIGWINCH. The supervisor copies the pty's output to the real terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import subprocess
import termios
from dataclasses import dataclass, field


@dataclass
class ChildStdio:
    """The file descriptors a child starts with, and the supervisor's ends of them."""

    stdin: int | None  # for Popen: an fd, subprocess.DEVNULL, or None to inherit ours
    stdout: int
    stderr: int
    outputs: list[tuple[int, str]]  # (read end, "stdout" or "stderr": where its copy goes)
    pty_master: int | None = None
    child_ends: list[int] = field(default_factory=list)

    @property
    def is_pty(self) -> bool:
        return self.pty_master is not None

    def close_child_ends(self) -> None:
        """Close the child's ends here once it has them, so that its exit ends our reads."""
        for fd in self.child_ends:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_ends = []

    def close(self) -> None:
        """Close every end (the child could not be started)."""
        self.close_child_ends()
        for fd, _ in self.outputs:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.outputs = []


class UserTerminal:
    """The supervisor's own stdin, stdout and stderr, and the pty it gives the child when
    stdout is a terminal."""

    def __init__(self, stdout_fd: int | None, stderr_fd: int | None, stdin_fd: int | None) -> None:
        self.out = {"stdout": stdout_fd, "stderr": stderr_fd}
        self.stdin_fd = stdin_fd
        self.use_pty = stdout_fd is not None and os.isatty(stdout_fd)
        self.takes_input = self.use_pty and stdin_fd is not None and os.isatty(stdin_fd)
        self.pty_master: int | None = None

    def open_stdio(self) -> ChildStdio:
        stdio = open_stdio(
            use_pty=self.use_pty,
            pass_input=self.takes_input,
            stdin_fd=self.stdin_fd,
            term_fd=self.out["stdout"],
        )
        self.pty_master = stdio.pty_master
        return stdio

    def resized(self) -> None:
        """After SIGWINCH: give the pty the terminal's new size (the kernel then signals the
        child's foreground group itself)."""
        copy_winsize(self.out["stdout"], self.pty_master)

    def pass_input(self) -> bool:
        """Copy what the user typed to the pty; False once there is no more to pass."""
        assert self.stdin_fd is not None
        try:
            data = os.read(self.stdin_fd, 65536)
        except OSError:
            data = b""
        if not data or self.pty_master is None:
            return False
        with contextlib.suppress(OSError):
            os.write(self.pty_master, data)
        return True


def open_stdio(
    *, use_pty: bool, pass_input: bool, stdin_fd: int | None, term_fd: int | None
) -> ChildStdio:
    """Open the child's streams: one pty (sized like `term_fd`; also its stdin when typed
    input is passed on) or a pipe each for stdout and stderr."""
    if use_pty:
        master, slave = pty.openpty()
        copy_winsize(term_fd, slave)
        stdin: int | None = None
        if pass_input:
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ECHO  # the user's terminal already echoes what they type
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            stdin = slave
        return ChildStdio(stdin, slave, slave, [(master, "stdout")], master, [slave])
    out_r, out_w = os.pipe()  # close-on-exec; Popen dup2()s the write ends
    err_r, err_w = os.pipe()
    stdin = subprocess.DEVNULL if stdin_fd is None else None
    return ChildStdio(
        stdin, out_w, err_w, [(out_r, "stdout"), (err_r, "stderr")], None, [out_w, err_w]
    )


def take_controlling_terminal() -> None:
    """In the child, after setsid: make the pty on fd 1 its controlling terminal."""
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


def copy_winsize(src: int | None, dst: int | None) -> None:
    """Give the terminal `dst` the window size of the terminal `src` (quietly, best effort)."""
    if src is None or dst is None:
        return
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
