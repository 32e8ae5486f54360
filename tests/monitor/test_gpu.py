"""NVML handling with a fake `pynvml` (no GPU on this machine; mocking NVML is allowed):
devices and per-process memory/utilisation are read, and any NVML failure becomes None."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from ocrtrain.monitor import gpu
from ocrtrain.procman import to_json


class _NVMLError(Exception):
    pass


def _fake_nvml(fail_init: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    ns = types.SimpleNamespace

    def init() -> None:
        if fail_init:
            raise _NVMLError("Driver Not Loaded")

    def no_util(handle: Any, since: int) -> Any:
        raise _NVMLError("Not Supported")

    m.nvmlInit = init  # type: ignore[attr-defined]
    m.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    m.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    m.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H100" if h == 0 else "NVIDIA H200"  # type: ignore[attr-defined]
    m.nvmlDeviceGetMemoryInfo = lambda h: ns(total=80 * 2**30, used=(h + 1) * 2**30)  # type: ignore[attr-defined]
    m.nvmlDeviceGetUtilizationRates = lambda h: ns(gpu=50 + h)  # type: ignore[attr-defined]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [  # type: ignore[attr-defined]
        ns(pid=100, usedGpuMemory=2**30),
        ns(pid=200, usedGpuMemory=None),  # hidden by the driver (no permission)
    ]
    m.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []  # type: ignore[attr-defined]
    m.nvmlDeviceGetProcessUtilization = (  # type: ignore[attr-defined]
        lambda h, since: [ns(pid=100, smUtil=30 + h)] if h == 0 else no_util(h, since)
    )
    return m


def test_devices_and_per_process_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "driver_present", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    reading = gpu.read()
    assert reading is not None
    g = 2**30
    assert [to_json(d) for d in reading.devices] == [
        {"index": 0, "name": "NVIDIA H100", "mem_total": 80 * g, "mem_used": g, "util": 50.0},
        {"index": 1, "name": "NVIDIA H200", "mem_total": 80 * g, "mem_used": 2 * g, "util": 51.0},
    ]
    assert reading.by_pid[100] == gpu.GpuProcess(mem_bytes=2 * 2**30, util=30.0)
    assert reading.by_pid[200] == gpu.GpuProcess(mem_bytes=None, util=None)


def test_init_failure_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "driver_present", lambda: True)
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(fail_init=True))
    assert gpu.read() is None


def test_no_driver_does_not_import_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "driver_present", lambda: False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # an import would raise
    assert gpu.read() is None
