"""Benchmark `ocrtrain ps --json` against `ps -eo pid,ppid,args` and the seed-style monitor.

Setup: DECOYS idle processes (mostly `sleep`, plus `vim runners/train.py`, `less train.log`
and `grep runners/train.py` look-alikes) and RUNS real supervised runs (`ocrtrain run`
machinery: supervisor, watchdog, `python runners/train.py` forking WORKERS workers).

For each tool: median wall time over --repeat runs, peak RSS (max RSS of the tool's processes,
from getrusage(RUSAGE_CHILDREN) in a fresh wrapper), runs found, false positives (decoys
reported) and misses (training processes not reported). The seed-style tool is stopped after
--seed-cap seconds. Everything started is cleaned up at the end, also on Ctrl-C.

    .venv/bin/python bench/ps_bench.py [--decoys 2000] [--runs 20] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PAUSE = """import os, sys, time
for _ in range(int(os.environ.get("PAUSE_FORKS", "0"))):
    if os.fork() == 0:
        break
time.sleep(3600)
"""
FORKER = """import os, signal, sys
n = int(sys.argv[1])
for i in range(n):
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "3600"])
signal.pause()
"""
# Runs in a fresh interpreter: runs the tool, prints its wall time and its processes' max RSS.
WRAPPER = """import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"s": dt, "rss_kb": rss, "rc": p.returncode, "out": p.stdout}))
"""
SEED = r"""
# The seed-style monitor: pgrep -f, then ps -p per pid, then pgrep -P per parent.
for pid in $(pgrep -f runners/train.py); do
  ps -p "$pid" -o pid=,ppid=,etime=,rss=,args=
  for child in $(pgrep -P "$pid"); do ps -p "$child" -o pid=,ppid=,etime=,rss=,args=; done
done
"""


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def count_children(pid: int) -> int:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return 0
    return len(out.split())


def measure(argv: list[str], env: dict[str, str], timeout: float | None) -> dict[str, Any]:
    try:
        out = subprocess.run(
            [PY, "-c", WRAPPER, *argv], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"s": None, "rss_kb": None, "rc": None, "out": ""}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoys", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed-cap", type=float, default=120.0)
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from ocrtrain.procman import procfs
    from ocrtrain.procman.api import start
    from ocrtrain.procman.journal import Journal
    from ocrtrain.procman.spec import RunSpec

    work = Path(tempfile.mkdtemp(prefix="ocrtrain-bench-"))
    home = work / "home"
    env = dict(os.environ, OCRTRAIN_HOME=str(home))
    env.pop("OCRTRAIN_RUN_ID", None)
    os.environ["OCRTRAIN_HOME"] = str(home)
    (work / "runners").mkdir()
    (work / "runners" / "train.py").write_text(PAUSE)
    (work / "train.log").write_text(PAUSE)
    started: list[subprocess.Popen[bytes]] = []
    forker: subprocess.Popen[bytes] | None = None
    handles: list[Any] = []
    journal = Journal(home)
    try:
        t0 = time.monotonic()
        # Look-alike decoys: an editor, a pager and grep naming the script (argv only).
        lookalikes = []
        for argv0, arg in [("vim", "runners/train.py"), ("less", "train.log")] * 5:
            p = subprocess.Popen([argv0, arg], executable=PY, cwd=work, env=env)
            started.append(p)
            lookalikes.append(p.pid)
        for _ in range(5):
            p = subprocess.Popen(["grep", "runners/train.py"], stdin=subprocess.PIPE, cwd=work)
            started.append(p)
            lookalikes.append(p.pid)
        n_sleep = max(0, args.decoys - len(lookalikes))
        forker = subprocess.Popen([PY, "-c", FORKER, str(n_sleep)], start_new_session=True, env=env)
        started.append(forker)
        wait_for(lambda: count_children(forker.pid) >= n_sleep, 120, "the decoys")
        for i in range(args.runs):
            spec = RunSpec(
                argv=(PY, "runners/train.py"),
                name=f"bench-{i}",
                cwd=str(work),
                env={"PAUSE_FORKS": str(args.workers)},
                detach=True,
            )
            handles.append(start(spec, journal))
        expected: set[int] = set()

        def tagged() -> set[int]:
            ids = {h.id for h in handles}
            return {
                pid for pid, t in procfs.scan().items() if t.run_id in ids and t.stat.state != "Z"
            }

        per_run = 1 + args.workers
        wait_for(lambda: len(tagged()) >= args.runs * per_run, 120, "the runs' workers")
        expected = tagged()
        decoy_pids = set(lookalikes) | {
            int(x)
            for x in subprocess.run(
                ["pgrep", "-P", str(forker.pid)], capture_output=True, text=True
            ).stdout.split()
        }
        setup_s = time.monotonic() - t0
        total = len(list(procfs.iter_pids()))
        print(
            f"setup: {args.runs} runs x ({args.workers} workers + trainer) = {len(expected)} "
            f"training processes, {len(decoy_pids)} decoys, {total} processes in all "
            f"({setup_s:.0f} s)"
        )
        run_ids = {h.id for h in handles}

        def score_ps_json(out: str) -> tuple[int, int, int]:
            doc = json.loads(out)
            reported: set[int] = set()
            found = 0
            for run in doc["runs"]:
                if run["id"] in run_ids:
                    found += 1
                    reported |= {
                        p["pid"]
                        for p in run["processes"]
                        if p["role"] not in ("supervisor", "watchdog")
                    }
                elif run["state"] is not None:  # a run of this journal that is not ours
                    reported |= {p["pid"] for p in run["processes"]}
            return found, len(reported & decoy_pids), len(expected - reported)

        def score_seed(out: str) -> tuple[int, int, int]:
            reported = {int(line.split()[0]) for line in out.splitlines() if line.strip()}
            mains = {h.record().child_pid for h in handles if h.record().child_pid in reported}
            return len(mains), len(reported & decoy_pids), len(expected - reported)

        def score_none(out: str) -> tuple[int, int, int]:
            del out
            return 0, 0, 0

        tools: list[tuple[str, list[str], Any, int, float | None]] = [
            ("ps -eo pid,ppid,args", ["ps", "-eo", "pid,ppid,args"], score_none, args.repeat, None),
            (
                "ocrtrain ps --json",
                [str(Path(PY).parent / "ocrtrain"), "ps", "--json"],
                score_ps_json,
                args.repeat,
                None,
            ),
            (
                "python -m ocrtrain.monitor ps --json",
                [PY, "-m", "ocrtrain.monitor", "ps", "--json"],
                score_ps_json,
                args.repeat,
                None,
            ),
            ("seed-style (pgrep/ps)", ["bash", "-c", SEED], score_seed, 1, args.seed_cap),
        ]
        rows = []
        for name, argv, score, repeat, cap in tools:
            results = [measure(argv, env, cap) for _ in range(repeat)]
            times = [r["s"] for r in results if r["s"] is not None]
            rss = max((r["rss_kb"] or 0) for r in results)
            last = results[-1]
            found, fp, miss = score(last["out"]) if last["s"] is not None else (None, None, None)
            rows.append(
                {
                    "tool": name,
                    "median_s": statistics.median(times) if times else None,
                    "peak_rss_mb": rss / 1024 if rss else None,
                    "runs_found": found,
                    "false_positives": fp,
                    "misses": miss,
                    "timed_out": not times,
                }
            )
        base = rows[0]["median_s"]
        print(
            f"\n{'tool':38} {'time':>9} {'x ps':>6} {'peak RSS':>9} {'runs':>5} {'FP':>4} "
            f"{'miss':>5}"
        )
        for r in rows:
            t = f">{args.seed_cap:.0f} s" if r["timed_out"] else f"{r['median_s']:.3f} s"
            ratio = f"{r['median_s'] / base:.1f}" if r["median_s"] and base else "-"
            rss = f"{r['peak_rss_mb']:.1f} MB" if r["peak_rss_mb"] else "-"
            found = "-" if r["tool"].startswith("ps -eo") else f"{r['runs_found']}/{args.runs}"
            fp = "-" if r["tool"].startswith("ps -eo") else str(r["false_positives"])
            miss = "-" if r["tool"].startswith("ps -eo") else str(r["misses"])
            print(f"{r['tool']:38} {t:>9} {ratio:>6} {rss:>9} {found:>5} {fp:>4} {miss:>5}")
        if args.json:
            print(json.dumps(rows))
        return 0
    finally:
        from ocrtrain.monitor import cleanup

        plan = cleanup.plan(journal, include_live=True)
        mine = {h.id for h in handles}
        plan = type(plan)(
            created_at=plan.created_at,
            items=tuple(i for i in plan.items if i.run_id in mine),
            live_runs=tuple(r for r in plan.live_runs if r in mine),
        )
        cleanup.execute(plan, journal, grace=2.0)
        for p in started:
            if p is forker:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                p.kill()
        for p in started:
            p.wait()
        journal.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
