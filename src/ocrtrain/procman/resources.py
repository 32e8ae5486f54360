"""Per-process GPU memory, read through `nvidia-smi` so the core needs no NVML binding.

Returns None where there is no NVIDIA driver; callers show "N/A". The richer per-process view
(utilisation, per device) lives in the monitor, which may use nvidia-ml-py.
"""

from __future__ import annotations

import shutil
import subprocess
import time

_CACHE: tuple[float, dict[int, int] | None] = (0.0, None)
_TTL_S = 2.0


def gpu_memory_by_pid() -> dict[int, int] | None:
    """Bytes of GPU memory used per host pid, summed over devices; None without a driver."""
    global _CACHE
    now = time.monotonic()
    if now - _CACHE[0] < _TTL_S:
        return _CACHE[1]
    result: dict[int, int] | None = None
    exe = shutil.which("nvidia-smi")
    if exe is not None:
        try:
            out = subprocess.run(
                [exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
            result = {}
            for line in out.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    pid, mib = int(parts[0]), int(parts[1])
                    result[pid] = result.get(pid, 0) + mib * 2**20
        except (OSError, subprocess.SubprocessError):
            result = None
    _CACHE = (now, result)
    return result
