"""Per-process TCP bytes from the kernel's socket diagnostics, on a real TCP connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import alive, wait_until
from ocrtrain.procman import netbytes

# A child that connects, sends SENT bytes, reads RECEIVED bytes, forks a child holding the
# same socket (as a DataLoader worker would), and waits for stdin to close.
CHILD = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"x" * int(sys.argv[2]))
want, got = int(sys.argv[3]), 0
while got < want:
    got += len(s.recv(want - got))
if os.fork() == 0:
    sys.stdin.read()
    os._exit(0)
print(os.getpid(), flush=True)
sys.stdin.read()
os.wait()
"""
SENT, RECEIVED = 300_000, 70_000


def test_a_processes_tcp_bytes_are_counted_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(port), str(SENT), str(RECEIVED)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            conn, _ = server.accept()
            with conn:
                got = 0
                while got < SENT:
                    got += len(conn.recv(1 << 16))
                conn.sendall(b"y" * RECEIVED)
                assert child.stdout is not None
                child.stdout.readline()
                grandchild = int(
                    Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()[0]
                )

                def counted() -> netbytes.NetBytes | None:
                    mine = netbytes.process_bytes([child.pid, grandchild])
                    done = mine[child.pid].sent >= SENT and mine[child.pid].received >= RECEIVED
                    return mine[child.pid] if done else None

                child_bytes = wait_until(counted, timeout=10, what="the counters to settle")
                # The SYN counts as one acknowledged byte on some kernels.
                assert SENT <= child_bytes.sent <= SENT + 1
                assert RECEIVED <= child_bytes.received <= RECEIVED + 1
                assert child_bytes.sockets == 1
                # The forked child holds the same socket: it is not counted twice.
                assert netbytes.process_bytes([child.pid, grandchild])[grandchild].sockets == 0
                assert netbytes.process_bytes([grandchild])[grandchild].sent >= SENT
                # The server side of the same connection, seen from this process.
                assert netbytes.process_bytes([os.getpid()])[os.getpid()].received >= SENT
        finally:
            child.communicate(input="", timeout=10)
    wait_until(lambda: not alive([child.pid, grandchild]), timeout=10, what="children gone")


def test_a_vanished_process_reads_as_no_traffic() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(proc.stdout)
    assert netbytes.process_bytes([pid]) == {pid: netbytes.NetBytes(0, 0, 0)}


def test_interface_totals_include_loopback() -> None:
    nics = netbytes.nic_bytes()
    assert "lo" in nics and nics["lo"].sent > 0
    assert netbytes.nic_bytes("/nonexistent") == {}
