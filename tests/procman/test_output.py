"""Output: a fast writer is never blocked by a slow reader; terminals get a pty."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from helpers import (
    all_workload_pids,
    assert_gone_within,
    ocrtrain_popen,
    read_ready,
    wait_until,
    workload_cmd,
)
from ocrtrain.procman.journal import Journal, SampleRecord
from ocrtrain.procman.output import LogFile, RunOutput, TerminalCopy
from ocrtrain.procman.sampling import LimitBreach, memory_breach, timeout_breach
from ocrtrain.procman.spec import RunSpec

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


# -- the output path on plain pipes (no processes) -------------------------------------------


def _read_into(fd: int, got: bytearray) -> None:
    """Append what a non-blocking pipe holds now."""
    with contextlib.suppress(BlockingIOError):
        got.extend(os.read(fd, 1 << 20))


def _read_available(fd: int, want: int, timeout: float = 10.0) -> bytes:
    """Read from a non-blocking pipe until `want` bytes came (or fail after `timeout`)."""
    got = bytearray()

    def enough() -> bool:
        _read_into(fd, got)
        return len(got) >= want

    wait_until(enough, timeout=timeout, what=f"{want} bytes of output")
    return bytes(got)


def _output_to_pipe(
    tmp_path: Path, *, pipe: bool
) -> tuple[RunOutput, tuple[int, int], tuple[int, int]]:
    """A RunOutput reading a pipe (moved by a PipeMover, or polled as a pty would be),
    copying to another pipe."""
    child_r, child_w = os.pipe()
    dest_r, dest_w = os.pipe()
    os.set_blocking(dest_r, False)
    out = RunOutput(LogFile(str(tmp_path / "output.log")))
    out.add(child_r, out.copy_to(dest_w, "stdout"), pipe=pipe)
    return out, (child_r, child_w), (dest_r, dest_w)


def _pump_all(out: RunOutput, fd: int) -> None:
    while out.pump(fd):
        pass


def test_every_byte_reaches_the_log_and_the_copy_in_order(tmp_path: Path) -> None:
    out, (_, child_w), (dest_r, dest_w) = _output_to_pipe(tmp_path, pipe=True)
    data = bytes(range(256)) * 4096  # 1 MiB
    try:
        received = bytearray()
        for i in range(0, len(data), 100_000):
            os.write(child_w, data[i : i + 100_000])  # moved by the output's own thread
            received += _read_available(dest_r, min(i + 100_000, len(data)) - len(received))
        os.close(child_w)
        out.drain()
        assert bytes(received) == data
        assert out.log.bytes_written == len(data)
        assert out.terminal_bytes_dropped == 0
    finally:
        out.close()
        os.close(dest_r)
        os.close(dest_w)
    assert (tmp_path / "output.log").read_bytes() == data


def test_a_full_copy_drops_counts_and_announces_but_the_log_has_all(tmp_path: Path) -> None:
    child_r, child_w = os.pipe()
    dest_r, dest_w = os.pipe()  # nobody reads this until the end
    copy = TerminalCopy(dest_w, limit=65536)
    out = RunOutput(LogFile(str(tmp_path / "output.log")))
    out.add(child_r, copy, pipe=True)
    chunk = b"y" * 65535 + b"\n"
    for _ in range(64):  # 4 MiB: far more than the copy and the destination hold
        os.write(child_w, chunk)
    os.close(child_w)
    out.drain()
    assert out.log.bytes_written == 64 * len(chunk)
    dropped = out.terminal_bytes_dropped
    assert dropped > 0
    os.set_blocking(dest_r, False)
    shown = bytearray()

    def closed() -> bool:
        _read_into(dest_r, shown)
        return not copy._thread.is_alive()

    closer = threading.Thread(target=out.close)
    closer.start()
    wait_until(closed, timeout=10, what="the copy to flush")
    closer.join()
    _read_into(dest_r, shown)
    os.close(dest_r)
    os.close(dest_w)
    notices = re.findall(rb"\r\n\[ocrtrain: (\d+) bytes of output were not shown here", shown)
    assert notices and sum(int(n) for n in notices) == dropped
    text = re.sub(rb"\r\n\[ocrtrain: [^]]*\]\r\n", b"", bytes(shown))
    assert len(text) + dropped == 64 * len(chunk)  # every byte shown or counted
    assert (tmp_path / "output.log").stat().st_size == 64 * len(chunk)


def test_copy_to_an_append_mode_file_falls_back_to_write(tmp_path: Path) -> None:
    """splice(2) refuses append-mode files: the copy writes them the ordinary way."""
    child_r, child_w = os.pipe()
    dest = os.open(tmp_path / "terminal.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = RunOutput(LogFile(str(tmp_path / "output.log")))
    out.add(child_r, out.copy_to(dest, "stdout"), pipe=True)
    os.write(child_w, b"hello\n")
    os.close(child_w)
    out.drain()
    out.close()
    os.close(dest)
    assert (tmp_path / "terminal.txt").read_bytes() == b"hello\n"
    assert (tmp_path / "output.log").read_bytes() == b"hello\n"


def test_a_pty_or_unspliced_stream_is_read_and_written(tmp_path: Path) -> None:
    out, (child_r, child_w), (dest_r, dest_w) = _output_to_pipe(tmp_path, pipe=False)
    os.write(child_w, b"line one\nline two\n")
    os.close(child_w)
    _pump_all(out, child_r)
    assert _read_available(dest_r, 18) == b"line one\nline two\n"
    out.close()
    os.close(dest_r)
    os.close(dest_w)
    assert (tmp_path / "output.log").read_bytes() == b"line one\nline two\n"


def test_drain_gives_up_on_a_pipe_a_survivor_holds(tmp_path: Path) -> None:
    out, (_, child_w), (dest_r, dest_w) = _output_to_pipe(tmp_path, pipe=True)
    os.write(child_w, b"still here\n")
    out.drain(timeout=0.1)  # the write end stays open: returns anyway
    assert _read_available(dest_r, 11) == b"still here\n"
    os.close(child_w)
    out.drain()
    out.close()
    os.close(dest_r)
    os.close(dest_w)
    assert (tmp_path / "output.log").read_bytes() == b"still here\n"


def test_log_keeps_what_the_file_had(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"before\n")
    log = LogFile(str(path))
    log.write(b"after\n")
    log.close()
    assert path.read_bytes() == b"before\nafter\n"


def test_limit_breaches_are_values() -> None:
    spec = RunSpec(argv=("true",), timeout=60.0, max_memory=100 * 2**20)
    assert timeout_breach(spec, 59.9) is None
    assert timeout_breach(spec, 60.0) == LimitBreach("timeout", "ran longer than --timeout 60 s")
    sample = SampleRecord("r", 0.0, 3, 0.0, 200 * 2**20, None)
    assert memory_breach(spec, sample) == LimitBreach(
        "max_memory", "RSS 200 MiB exceeded --max-memory 100 MiB"
    )
    assert memory_breach(RunSpec(argv=("true",)), sample) is None
    assert timeout_breach(RunSpec(argv=("true",)), 1e9) is None


def _epoll_targets(pid: int) -> set[str]:
    """What the epoll instances of `pid` watch, as /proc/PID/fd link targets."""
    fd_dir = Path(f"/proc/{pid}/fd")
    watched: set[str] = set()
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) != "anon_inode:[eventpoll]":
                continue
            for line in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().splitlines():
                if line.startswith("tfd:"):
                    with contextlib.suppress(OSError):
                        watched.add(os.readlink(fd_dir / line.split()[1]))
    return watched


def test_the_supervisor_never_polls_the_childs_pipes(tmp_path: Path) -> None:
    """A polled pipe wakes its poller on every write (costly for a child printing lines): the
    child's stdout and stderr are moved by threads that wait without polling."""
    ready = tmp_path / "ready.json"
    proc = ocrtrain_popen("run", "--", *workload_cmd(ready, "--workers", "0"))
    try:
        info = read_ready(ready)
        run = Journal().list_runs()[0]
        assert run.supervisor_pid is not None
        child_out = {os.readlink(f"/proc/{info['main']}/fd/{n}") for n in (1, 2)}
        assert all(target.startswith("pipe:") for target in child_out)
        watched = _epoll_targets(run.supervisor_pid)
        assert watched  # the signal pipe, at least
        assert not watched & child_out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 143
        assert_gone_within(all_workload_pids(info), 1.0, "the run")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stdout_and_stderr_at_once_both_reach_the_log_whole(tmp_path: Path) -> None:
    """Two pipes spliced into one log by two threads: no write lands on another's bytes."""
    log = LogFile(str(tmp_path / "output.log"))
    lines = {name: [f"{name} {i:06d}\n".encode() for i in range(20_000)] for name in "ab"}

    def feed(name: str) -> None:
        r, w = os.pipe()
        try:
            for line in lines[name]:
                os.write(w, line)
                log.splice_from(r, len(line))
        finally:
            os.close(r)
            os.close(w)

    threads = [threading.Thread(target=feed, args=(name,)) for name in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    got = (tmp_path / "output.log").read_bytes().splitlines(keepends=True)
    assert sorted(got) == sorted(lines["a"] + lines["b"])
    assert log.bytes_written == sum(map(len, got))
