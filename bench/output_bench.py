"""Benchmark a child printing 1 GiB as fast as it can: bare vs under `ocrtrain run`.

Both write their stdout to /dev/null; under the supervisor every byte also goes to the run's
log. For each child style the table gives the median wall time over --repeat runs (bare is the
baseline, in the same run), the ratio, and for supervised runs the log size check and the
supervisor's peak RSS. --compare-src DIR adds a row for another checkout's `src/` (e.g. the
main branch) so an old and a new supervisor are measured side by side.

    .venv/bin/python bench/output_bench.py [--mib 1024] [--repeat 3] [--compare-src /work/main/src]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
# One child per style; each writes exactly MIB MiB to stdout.
CHILDREN = {
    # 128-byte lines, one write(2) each: what print() does under PYTHONUNBUFFERED=1 (run -u).
    "lines": (
        "import sys\n"
        "line = 'x' * 127 + '\\n'\n"
        "w = sys.stdout.write\n"
        "for _ in range(int(sys.argv[1]) * 8192):\n"
        "    w(line)\n"
    ),
    # 64 KiB writes straight to the fd: the child costs almost nothing, the copy is all.
    "blocks": (
        "import os, sys\n"
        "chunk = b'x' * 65535 + b'\\n'\n"
        "for _ in range(int(sys.argv[1]) * 16):\n"
        "    os.write(1, chunk)\n"
    ),
}


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # user + system seconds of every process of the command
    rss: int | None = None  # the supervisor's peak RSS in bytes


def _timed(argv: list[str], env: dict[str, str]) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(wall, cpu)


def _supervised(child: list[str], src: Path | None, expect: int) -> Timing:
    """One supervised run, with the supervisor's peak RSS; checks the log."""
    home = Path(tempfile.mkdtemp(prefix="ocrtrain-outbench-"))
    env = dict(os.environ, OCRTRAIN_HOME=str(home))
    if src is not None:
        env["PYTHONPATH"] = str(src)
    try:
        timing = _timed([PY, "-m", "ocrtrain", "run", "--", *child], env)
        logs = list(home.glob("runs/*/output.log"))
        size = logs[0].stat().st_size if logs else -1
        if size != expect:
            raise SystemExit(f"log has {size} bytes, expected {expect}")
        return Timing(timing.wall, timing.cpu, _peak_rss(home, env))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _peak_rss(home: Path, env: dict[str, str]) -> int | None:
    out = subprocess.run(
        [PY, "-m", "ocrtrain", "runs", "--json"], capture_output=True, text=True, env=env
    ).stdout
    try:
        run_id = json.loads(out)[0]["id"]
    except (ValueError, IndexError, KeyError):
        return None
    out = subprocess.run(
        [PY, "-m", "ocrtrain", "events", run_id, "--json"], capture_output=True, text=True, env=env
    ).stdout
    for event in json.loads(out or "[]"):
        if event.get("kind") == "finished":
            rss = event.get("detail", {}).get("supervisor_peak_rss")
            return int(rss) if rss is not None else None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="output size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (default 3)")
    parser.add_argument("--styles", default="lines,blocks", help="child styles: lines,blocks")
    parser.add_argument("--compare-src", type=Path, help="another checkout's src/ to measure too")
    args = parser.parse_args(argv)
    styles = [s for s in args.styles.split(",") if s]
    unknown = [s for s in styles if s not in CHILDREN]
    if unknown:
        parser.error(f"unknown style {unknown[0]!r}; choose from {', '.join(CHILDREN)}")
    expect = args.mib * 2**20
    targets: list[tuple[str, Path | None]] = [("supervised (this tree)", None)]
    if args.compare_src is not None:
        targets.append((f"supervised ({args.compare_src})", args.compare_src))
    print(f"{args.mib} MiB to stdout (/dev/null), median of {args.repeat}; log size checked")
    header = ("child", "how", "wall s", "min s", "ratio", "CPU s", "sup RSS")
    print("{:<7} {:<40} {:>7} {:>6} {:>6} {:>6} {:>8}".format(*header))
    for style in styles:
        child = [PY, "-u", "-c", CHILDREN[style], str(args.mib)]
        bare = [_timed(child, dict(os.environ)) for _ in range(args.repeat)]
        base = statistics.median(t.wall for t in bare)
        _row(style, "bare (baseline)", bare, base)
        for label, src in targets:
            _row(style, label, [_supervised(child, src, expect) for _ in range(args.repeat)], base)
    return 0


def _row(style: str, label: str, runs: list[Timing], base: float) -> None:
    wall = statistics.median(t.wall for t in runs)
    cpu = statistics.median(t.cpu for t in runs)
    rss = max((t.rss for t in runs if t.rss is not None), default=None)
    rss_text = f"{rss / 2**20:.0f} MiB" if rss is not None else "-"
    print(
        f"{style:<7} {label:<40} {wall:>7.2f} {min(t.wall for t in runs):>6.2f} "
        f"{wall / base:>5.2f}x {cpu:>6.2f} {rss_text:>8}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
