"""Network bytes per process and per network interface, from the kernel alone.

A rank's traffic is its TCP sockets' traffic (gloo and NCCL's socket transport, the c10d
store): the kernel's socket diagnostics (netlink `NETLINK_SOCK_DIAG`, what `ss -ti` prints)
report each socket's `tcp_info`, whose `tcpi_bytes_acked` / `tcpi_bytes_received` count what
it sent (and the peer acknowledged) and received. Sockets map to processes through the
`socket:[INODE]` links of `/proc/PID/fd`. Interface totals come from `/sys/class/net`.
Linux only; every reader returns what it could read and never raises for a vanished process.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ocrtrain.procman import procfs

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_INFO = 2
ALL_TCP_STATES = 0xFFFFFFFF

_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 B)
_REQ = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, sockid (48 B), expires, rqueue, wqueue, uid, inode
_DIAG_MSG = struct.Struct("=BBBB48xIIIII")
_RTATTR = struct.Struct("=HH")  # len, type
# struct tcp_info (linux/tcp.h): the two byte counters sit at fixed offsets since Linux 4.1/4.2
_BYTES_ACKED_AT = 120
_BYTES_RECEIVED_AT = 128
_U64 = struct.Struct("=Q")


@dataclass(frozen=True, slots=True)
class TcpCounters:
    """One TCP socket's byte counters (in bytes)."""

    inode: int
    sent: int  # tcpi_bytes_acked: sent and acknowledged by the peer
    received: int  # tcpi_bytes_received


@dataclass(frozen=True, slots=True)
class NetBytes:
    """A process's TCP traffic: the sum over the sockets it holds (in bytes)."""

    sent: int
    received: int
    sockets: int


@dataclass(frozen=True, slots=True)
class NicBytes:
    """A network interface's totals since it came up (in bytes)."""

    sent: int
    received: int


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _parse_tcp_info(payload: bytes) -> tuple[int, int] | None:
    if len(payload) < _BYTES_RECEIVED_AT + 8:
        return None  # a kernel older than 4.2 reports no byte counters
    acked = _U64.unpack_from(payload, _BYTES_ACKED_AT)[0]
    received = _U64.unpack_from(payload, _BYTES_RECEIVED_AT)[0]
    return acked, received


def _parse_diag_message(body: bytes) -> TcpCounters | None:
    if len(body) < _DIAG_MSG.size:
        return None
    inode = _DIAG_MSG.unpack_from(body)[-1]
    offset = _DIAG_MSG.size
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        if kind == INET_DIAG_INFO:
            counters = _parse_tcp_info(body[offset + _RTATTR.size : offset + length])
            if counters is None:
                return None
            return TcpCounters(inode, *counters)
        offset += _align4(length)
    return None


def _dump_family(family: int) -> Iterator[TcpCounters]:
    """Every TCP socket of `family` in this network namespace, with its counters."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        request = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), ALL_TCP_STATES)
        header = _NLMSG_HDR.pack(
            _NLMSG_HDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        nl.sendall(header + request)
        while True:
            data = nl.recv(1 << 16)
            if not data:
                return
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                if length < _NLMSG_HDR.size:
                    return
                body = data[offset + _NLMSG_HDR.size : offset + length]
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else errno.EIO
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                if kind == SOCK_DIAG_BY_FAMILY:
                    counters = _parse_diag_message(body)
                    if counters is not None:
                        yield counters
                offset += _align4(length)


def tcp_sockets() -> dict[int, TcpCounters]:
    """Every TCP socket (IPv4 and IPv6) of this network namespace, by inode.

    Raises:
        OSError: the kernel refused the netlink query (no `NETLINK_SOCK_DIAG` support).
    """
    out: dict[int, TcpCounters] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for counters in _dump_family(family):
            out[counters.inode] = counters
    return out


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` holds open (empty if it is gone or not readable)."""
    fd_dir = f"{procfs.PROC}/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return set()
    inodes = set()
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def process_bytes(pids: Iterable[int]) -> dict[int, NetBytes]:
    """TCP bytes sent and received by each of `pids`.

    A socket held by several of them (a forked DataLoader worker inherits its rank's open
    sockets) counts once, for the oldest holder: the process that opened it.

    Raises:
        OSError: the kernel refused the netlink query.
    """
    holders: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    pids = list(pids)
    for pid in pids:
        stat = procfs.read_stat(pid)
        starts[pid] = stat.start if stat else 0
        for inode in socket_inodes(pid):
            holders.setdefault(inode, []).append(pid)
    totals = {pid: [0, 0, 0] for pid in pids}
    if holders:
        for inode, counters in tcp_sockets().items():
            owners = holders.get(inode)
            if not owners:
                continue
            owner = min(owners, key=lambda p: (starts[p], p))
            acc = totals[owner]
            acc[0] += counters.sent
            acc[1] += counters.received
            acc[2] += 1
    return {pid: NetBytes(*acc) for pid, acc in totals.items()}


def nic_bytes(sys_class_net: str = "/sys/class/net") -> dict[str, NicBytes]:
    """Bytes sent and received by each network interface since it came up."""
    out: dict[str, NicBytes] = {}
    try:
        names = sorted(os.listdir(sys_class_net))
    except OSError:
        return out
    for name in names:
        stats = f"{sys_class_net}/{name}/statistics"
        try:
            with open(f"{stats}/tx_bytes") as tx, open(f"{stats}/rx_bytes") as rx:
                out[name] = NicBytes(int(tx.read()), int(rx.read()))
        except (OSError, ValueError):
            continue
    return out
