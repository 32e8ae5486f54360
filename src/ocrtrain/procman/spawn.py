"""Starting the run's main child: its own session (and cgroup, and a parent-death signal),
the run's environment, and the shell's exit codes when it cannot be started."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import RunCgroup
from ocrtrain.procman.errors import SpawnError
from ocrtrain.procman.lifeline import set_parent_death_signal
from ocrtrain.procman.terminal import ChildStdio, take_controlling_terminal

# Reading the terminal from the background must fail (EIO), not stop the supervisor; the
# child gets the default behaviour back.
BACKGROUND_TTY = (signal.SIGTTIN, signal.SIGTTOU)


def exit_status(wait_status: int) -> tuple[int, int | None]:
    """(shell-style exit code, signal number or None) from a waitpid status."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(wait_status), None


@dataclass
class MainChild:
    """The command the run was started with: our own child, so its pid is ours until reaped."""

    popen: subprocess.Popen[bytes]
    start: int | None  # clock ticks since boot
    status: int | None = None  # waitpid status, once reaped
    reaped_at: int | None = None  # clock ticks since boot

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.status is None

    def reaped(self, status: int) -> None:
        self.status = status
        self.reaped_at = procfs.now_ticks()
        self.popen.returncode = exit_status(status)[0]


def spawn_error(command: str, exc: OSError) -> SpawnError:
    """The shell's answer to a command that cannot be started: 127 missing, 126 otherwise."""
    if isinstance(exc, FileNotFoundError):
        return SpawnError(f"command not found: {command}", 127)
    if isinstance(exc, PermissionError):
        return SpawnError(f"command not executable: {command}", 126)
    return SpawnError(f"cannot execute {command}: {exc.strerror}", 126)


def start_child(
    argv: list[str],
    cwd: str,
    env: Mapping[str, str],
    stdio: ChildStdio,
    cgroup: RunCgroup | None,
) -> MainChild:
    """Start `argv` in a new session, in `cgroup`, killed when this process dies.

    Raises:
        SpawnError: the command is missing (127) or cannot be executed (126).
        subprocess.SubprocessError: the child could not join `cgroup`.
    """
    parent = os.getpid()
    is_pty = stdio.is_pty

    def in_child() -> None:
        # Runs in the child between fork and exec (start_new_session already ran setsid).
        if cgroup is not None:
            cgroup.add_self()  # a failure aborts this spawn
        set_parent_death_signal(signal.SIGKILL, expected_parent=parent)
        if is_pty:
            take_controlling_terminal()
        for sig in BACKGROUND_TTY:
            signal.signal(sig, signal.SIG_DFL)

    try:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=stdio.stdin,
            stdout=stdio.stdout,
            stderr=stdio.stderr,
            start_new_session=True,
            preexec_fn=in_child,  # noqa: PLW1509 (single-threaded at this point)
        )
    except OSError as exc:
        raise spawn_error(argv[0], exc) from exc
    st = procfs.read_stat(popen.pid)
    return MainChild(popen, st.start if st else None)
