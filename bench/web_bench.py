"""Web UI benchmark (issue 5 targets): with N finished runs in history and one run printing
1,000 lines/s, measure API latency (p50/p95), whether the log stream keeps up, and the
server's memory over time.

    .venv/bin/python bench/web_bench.py                 # 60 s (default)
    .venv/bin/python bench/web_bench.py --minutes 10    # the full target

Loopback only, bounded, and it removes everything it started (runs, server, temp home).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_urlsafe(16)  # the UI wants a token on loopback too
AUTH = {"Authorization": f"Bearer {TOKEN}"}

PRINTER = r"""
import sys, time
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
total = int(rate * seconds)
t0 = time.time()
pad = "x" * 60
for i in range(total):
    print(f"{i} {time.time():.4f} step {i} loss {1.0 / (1 + i):.6f} {pad}")
    if i % 10 == 9:
        sys.stdout.flush()
        delay = t0 + (i + 1) / rate - time.time()
        if delay > 0:
            time.sleep(delay)
sys.stdout.flush()
print(f"printed {total} lines", flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def make_history(n: int) -> None:
    """N real, short supervised runs (so the journal holds real rows, events and logs)."""
    from ocrtrain.procman import RunSpec, start

    handles = []
    for i in range(n):
        spec = RunSpec(argv=("sh", "-c", f"echo history run {i}; seq 1 200"), name=f"hist{i}")
        handles.append(start(spec))
        if len(handles) >= 8:
            handles.pop(0).wait(timeout=60)
    for h in handles:
        h.wait(timeout=60)


class LogReader(threading.Thread):
    """Reads the live run's SSE stream; records each line's delay from print to arrival."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.lines = 0
        self.delays: list[float] = []
        self.ended = False
        self.error: str | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(headers=AUTH, timeout=httpx.Timeout(30, read=60)) as c,
                c.stream("GET", self.url) as resp,
            ):
                event = None
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "lines":
                        now = time.time()
                        batch = json.loads(line[6:])["lines"]
                        for text in batch:
                            self.lines += 1
                            parts = text.split(" ", 2)
                            if self.lines % 50 == 0 and len(parts) > 2:
                                try:
                                    self.delays.append(now - float(parts[1]))
                                except ValueError:
                                    pass
                    elif line.startswith("data: ") and event == "end":
                        self.ended = True
                        return
        except Exception as exc:
            self.error = repr(exc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="live-run duration (default 60)")
    ap.add_argument("--minutes", type=float, default=None, help="duration in minutes instead")
    ap.add_argument("--history", type=int, default=50, help="finished runs in the journal")
    ap.add_argument("--rate", type=float, default=1000.0, help="lines per second of the live run")
    ap.add_argument("--rps", type=float, default=20.0, help="API requests per second")
    args = ap.parse_args()
    seconds = args.minutes * 60 if args.minutes is not None else args.seconds

    home = Path(tempfile.mkdtemp(prefix="ocrtrain-webbench-"))
    os.environ["OCRTRAIN_HOME"] = str(home)
    server: subprocess.Popen[bytes] | None = None
    live_id: str | None = None
    try:
        t = time.time()
        make_history(args.history)
        print(f"history: {args.history} finished runs in {time.time() - t:.1f} s", flush=True)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(home / "server.log", "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "ocrtrain", "ui", "--port", str(port)],
                env=dict(os.environ, OCRTRAIN_UI_TOKEN=TOKEN),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=home,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", headers=AUTH, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start; see {home / 'server.log'}")
            time.sleep(0.1)
        proc = psutil.Process(server.pid)

        from ocrtrain.procman import RunSpec, start

        spec = RunSpec(
            argv=(sys.executable, "-c", PRINTER, str(args.rate), str(seconds)),
            name="printer",
            grace=2.0,
        )
        handle = start(spec)
        live_id = handle.id
        reader = LogReader(f"{url}/api/runs/{live_id}/logs")
        reader.start()

        endpoints = ["/api/runs", "/api/processes", f"/api/runs/{live_id}"]
        lat: dict[str, list[float]] = {e: [] for e in endpoints}
        rss: list[tuple[float, int]] = []
        t0 = time.monotonic()
        next_rss = t0
        i = 0
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            while time.monotonic() - t0 < seconds:
                ep = endpoints[i % len(endpoints)]
                i += 1
                s = time.perf_counter()
                r = c.get(ep)
                lat[ep].append((time.perf_counter() - s) * 1000)
                r.raise_for_status()
                if time.monotonic() >= next_rss:
                    rss.append((time.monotonic() - t0, proc.memory_info().rss))
                    next_rss += max(1.0, seconds / 120)
                time.sleep(max(0.0, t0 + i / args.rps - time.monotonic()))
        handle.wait(timeout=60)
        reader.join(timeout=60)
        rss.append((time.monotonic() - t0, proc.memory_info().rss))

        written = int(args.rate * seconds)
        print()
        print(f"duration {seconds:.0f} s, live run {args.rate:.0f} lines/s, {args.history} runs")
        print(f"{'endpoint':<34} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for ep, values in lat.items():
            name = ep.replace(live_id, "{id}")
            print(
                f"{name:<34} {len(values):>6} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f}"
                f" {max(values):>8.1f}"
            )
        print()
        print(f"log stream: {reader.lines} of {written + 1} lines received, ended={reader.ended}")
        if reader.error:
            print(f"log stream error: {reader.error}")
        d = reader.delays or [0.0]
        print(
            f"line delay print->client: p50 {pct(d, 50) * 1000:.0f} ms, "
            f"p95 {pct(d, 95) * 1000:.0f} ms, max {max(d) * 1000:.0f} ms"
        )
        warm = [m for ts, m in rss if ts >= seconds * 0.1] or [rss[-1][1]]
        mib = 2**20
        print(
            f"server RSS: start {rss[0][1] / mib:.1f} MiB, after warm-up {warm[0] / mib:.1f} MiB,"
            f" end {rss[-1][1] / mib:.1f} MiB, max {max(m for _, m in rss) / mib:.1f} MiB"
        )
        ok = (
            all(pct(v, 95) <= 100 for v in lat.values())
            and reader.lines >= written
            and rss[-1][1] - warm[0] < 20 * 2**20
        )
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1
    finally:
        if live_id is not None:
            from ocrtrain.procman import request_stop
            from ocrtrain.procman.journal import Journal

            with Journal() as j:
                rec = j.get_run(live_id)
                if rec is not None and not rec.is_final:
                    request_stop(j, rec, force=True, source="web_bench")
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
