"""Output: a fast writer is never blocked by a slow reader; terminals get a pty."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from helpers import wait_until
from ocrtrain.procman.journal import Journal

BLAST = (
    "import sys\n"
    "chunk = b'x' * 65535 + b'\\n'\n"
    "for _ in range(1600):\n"  # 100 MiB
    "    sys.stdout.buffer.write(chunk)\n"
    "sys.stdout.flush()\n"
)


def test_100mb_child_is_not_blocked_by_a_reader_that_never_reads() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrtrain", "run", "--", sys.executable, "-c", BLAST],
        stdout=subprocess.PIPE,  # nobody reads this pipe until the run has ended
        stderr=subprocess.DEVNULL,
    )
    try:
        journal = Journal()
        wait_until(
            lambda: journal.list_runs() and journal.list_runs()[0].is_final,
            timeout=120,
            interval=0.1,
            what="the 100 MiB run to finish with an unread stdout",
        )
        run = journal.list_runs()[0]
        assert run.exit_code == 0
        assert Path(run.log_path).stat().st_size == 100 * 2**20  # the log has everything
        finished = next(e for e in journal.events(run.id) if e.kind == "finished")
        assert finished.detail["terminal_bytes_dropped"] > 0
        assert finished.detail["supervisor_peak_rss"] < 100 * 2**20
        out, _ = proc.communicate(timeout=30)
        assert b"bytes of output were not shown here" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SIZE_PROBE = (
    "import os, signal, sys, time\n"
    "print('size', *os.get_terminal_size(), 'tty', sys.stdout.isatty(), flush=True)\n"
    "got = []\n"
    "signal.signal(signal.SIGWINCH, lambda *a: got.append(1))\n"
    "open(sys.argv[1], 'w').close()\n"
    "deadline = time.time() + 20\n"
    "while not got and time.time() < deadline:\n"
    "    time.sleep(0.01)\n"
    "print('resized', *os.get_terminal_size(), flush=True)\n"
)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_terminal_gets_a_pty_with_window_size_and_sigwinch(tmp_path: Path) -> None:
    armed = tmp_path / "armed"
    pid, master = pty.fork()
    if pid == 0:
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "ocrtrain",
                "run",
                "--",
                sys.executable,
                "-c",
                SIZE_PROBE,
                str(armed),
            ],
        )
    try:
        _set_size(master, 33, 111)
        wait_until(armed.exists, timeout=20, what="the child to start")
        _set_size(master, 40, 132)  # the kernel sends SIGWINCH to the supervisor's group
        output = b""
        while b"resized" not in output or not output.endswith(b"\n"):
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        text = output.decode()
        assert "tty True" in text
        assert "size 111 33" in text or "size 132 40" in text
        assert "resized 132 40" in text
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)
