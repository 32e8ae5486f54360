"""`trainer.precision: auto` on the CPU: the precision that makes this model's step faster here.

A bfloat16 flag (AVX512-BF16, AMX) says that the CPU can compute in bfloat16, not that
oneDNN makes this model faster with it: on an AMD EPYC with AVX512-BF16 a mixed bfloat16 step
took ~0.6x the float32 one, on an Intel Xeon with the same flag ~1.3-1.4x. So where the flag is
present, a short probe decides: a step of a small CRNN, both ways, on one thread. The answer
is kept per CPU model, flags and torch version in `$OCRTRAIN_HOME/cpu-precision.json`, so a machine
pays for the probe (~1 s) once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from ocrtrain.procman import ensure_home

log = logging.getLogger(__name__)

AUTO = "auto"
BF16 = "bf16-mixed"
FP32 = "32-true"
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CACHE_NAME = "cpu-precision.json"
# bfloat16 keeps 8 bits of mantissa: it must be clearly faster to be chosen.
BF16_MIN_GAIN = 0.9


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]


@dataclass(frozen=True)
class StepTimes:
    """Median milliseconds of one probe step in each precision."""

    fp32_ms: float
    bf16_ms: float

    @property
    def choice(self) -> str:
        return BF16 if self.bf16_ms < BF16_MIN_GAIN * self.fp32_ms else FP32


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """The first CPU's model name and flags (empty where the file cannot be read)."""
    model, flags = "", frozenset[str]()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return CpuInfo(model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


def probe_step_times(rounds: int = 6) -> StepTimes:
    """Time a training step (forward and backward) of a small CRNN on one thread, float32 and
    mixed bfloat16 in turn, after a warm-up of each."""
    import torch

    from ocrtrain.train.models.crnn import CRNN

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        net = CRNN(
            96,
            channels=(16, 32, 64, 96),
            lstm_layers=1,
            dropout=0.0,
            stem="stride",
            height_pool="stride",
            frames_per_column=2,
        )
        images = torch.rand(8, 1, 32, 256, generator=gen)
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(rounds + 1):
            for bf16 in (False, True):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = net(images)
                logits.float().log_softmax(-1).mean().backward()
                if i:  # the first round warms up oneDNN's kernels of each precision
                    times[bf16].append(time.perf_counter() - start)
                net.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(threads)
    return StepTimes(
        fp32_ms=statistics.median(times[False]) * 1000,
        bf16_ms=statistics.median(times[True]) * 1000,
    )


def _cache_key(cpu: CpuInfo) -> str:
    """The CPU model, its flags (virtual machines often name every generation alike) and the
    torch version."""
    from importlib.metadata import version

    flags = hashlib.sha256(" ".join(sorted(cpu.flags)).encode()).hexdigest()[:12]
    return f"{cpu.model or 'unknown CPU'} | flags {flags} | torch {version('torch')}"


def _read_cache(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cpu_precision(cpuinfo: str | Path = "/proc/cpuinfo", home: Path | None = None) -> str:
    """`bf16-mixed` where this CPU has native bfloat16 and the probe's step is faster with it
    (measured once, then read from `home`'s cache), else `32-true`."""
    cpu = read_cpuinfo(cpuinfo)
    if not cpu.flags & BF16_FLAGS:
        return FP32
    cache = ensure_home(home) / CACHE_NAME
    key = _cache_key(cpu)
    entries = _read_cache(cache)
    known = entries.get(key)
    if isinstance(known, dict) and known.get("precision") in (BF16, FP32):
        return str(known["precision"])
    from ocrtrain.train.checkpoint_io import atomic_write

    times = probe_step_times()
    entries[key] = {"precision": times.choice, "fp32_ms": times.fp32_ms, "bf16_ms": times.bf16_ms}
    atomic_write(cache, (json.dumps(entries, indent=1) + "\n").encode())
    log.info(
        "trainer.precision=auto: %s on this CPU (a probe step took %.1f ms in float32, %.1f ms "
        "in mixed bfloat16; kept in %s)",
        times.choice,
        times.fp32_ms,
        times.bf16_ms,
        cache,
    )
    return times.choice


def resolve(precision: str, home: Path | None = None) -> str:
    """The precision to give Lightning: `auto` measured on this CPU (kept in `home`, by default
    `$OCRTRAIN_HOME`), anything else as is."""
    return cpu_precision(home=home) if str(precision) == AUTO else str(precision)
