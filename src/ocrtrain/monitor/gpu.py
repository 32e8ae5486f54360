"""GPU devices and per-process GPU use through NVIDIA's NVML (nvidia-ml-py), failsafe.

Every function returns None (shown as "N/A") instead of raising when there is no driver, no
device, or NVML refuses a query: the monitor must work the same on a laptop without a GPU.
`pynvml` is imported only when a driver is present, because importing it costs ~25 ms and
`ocrtrain ps --json` has to stay close to the speed of `ps`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_DRIVER_MARKERS = ("/dev/nvidiactl", "/proc/driver/nvidia/version")
_UTIL_WINDOW_US = 5_000_000  # per-process utilisation: samples of the last 5 s


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU as NVML reports it (bytes; utilisation in percent)."""

    index: int
    name: str | None
    mem_total: int | None  # in bytes
    mem_used: int | None  # in bytes
    util: float | None  # in percent


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process's GPU use summed over devices."""

    mem_bytes: int | None  # in bytes; None where the driver hides it
    util: float | None  # SM utilisation in percent, None if NVML has no recent sample


@dataclass(frozen=True, slots=True)
class GpuReading:
    """Devices plus per-pid use, read at one moment."""

    devices: list[GpuDevice]
    by_pid: dict[int, GpuProcess]


def driver_present() -> bool:
    """Cheap check (no import) for an NVIDIA kernel driver."""
    return any(os.path.exists(p) for p in _DRIVER_MARKERS)


def _nvml() -> Any | None:
    if not driver_present():
        return None
    try:
        import pynvml
    except ImportError:
        log.debug("nvidia-ml-py is not installed; GPU columns show N/A")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml raises NVMLError subclasses and OSError-likes
        log.debug("NVML init failed: %s", exc)
        return None
    return pynvml


def _safe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # one unreadable field must not hide the others
        return None


def read() -> GpuReading | None:
    """Read every device and the processes on it.

    Returns:
        None where NVML is unavailable (no driver, no library, init failure).
    """
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return _read(nvml)
    finally:
        _safe(nvml.nvmlShutdown)


def _read(nvml: Any) -> GpuReading | None:
    count = _safe(nvml.nvmlDeviceGetCount)
    if count is None:
        return None
    devices: list[GpuDevice] = []
    mem: dict[int, int | None] = {}
    util: dict[int, float] = {}
    since = int(time.time() * 1_000_000) - _UTIL_WINDOW_US
    for index in range(int(count)):
        handle = _safe(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            devices.append(GpuDevice(index, None, None, None, None))
            continue
        name = _safe(nvml.nvmlDeviceGetName, handle)
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        meminfo = _safe(nvml.nvmlDeviceGetMemoryInfo, handle)
        rates = _safe(nvml.nvmlDeviceGetUtilizationRates, handle)
        devices.append(
            GpuDevice(
                index=index,
                name=name,
                mem_total=int(meminfo.total) if meminfo is not None else None,
                mem_used=int(meminfo.used) if meminfo is not None else None,
                util=float(rates.gpu) if rates is not None else None,
            )
        )
        for getter in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            procs = _safe(getattr(nvml, getter, None) or (lambda _h: None), handle) or []
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                pid = int(p.pid)
                if isinstance(used, int) and used >= 0 and used < 2**63:
                    prev = mem.get(pid)
                    mem[pid] = (prev or 0) + used
                else:
                    mem.setdefault(pid, None)
        samples = _safe(nvml.nvmlDeviceGetProcessUtilization, handle, since) or []
        for s in samples:
            pid = int(s.pid)
            util[pid] = max(util.get(pid, 0.0), float(s.smUtil))
    by_pid = {pid: GpuProcess(mem.get(pid), util.get(pid)) for pid in set(mem) | set(util)}
    return GpuReading(devices, by_pid)
