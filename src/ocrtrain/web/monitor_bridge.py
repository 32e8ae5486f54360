"""The UI's view of the monitor (process snapshots, orphan cleanup, startup hints).

The monitor is imported lazily so that the UI keeps serving runs and logs when it is missing or
broken; snapshots are cached briefly so that many browser tabs cost one `/proc` scan.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ocrtrain.procman import ACTIVE_STATES, Journal, to_json

log = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 1.0
FIRST_CPU_WINDOW_S = 0.25


class MonitorUnavailable(RuntimeError):
    """The monitor module (or one of its functions) is not installed."""


class MonitorBridge:
    """Cached process snapshots; CPU % is measured between consecutive snapshots."""

    def __init__(self, journal: Journal, ttl: float = SNAPSHOT_TTL_S) -> None:
        self.journal = journal
        self.ttl = ttl
        self._lock = threading.Lock()  # guards the cache fields (held briefly)
        self._scan_lock = threading.Lock()  # one /proc scan at a time
        self._refreshing = False
        self._previous: Any = None
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    def snapshot(self) -> dict[str, Any]:
        """The `ocrtrain ps --json` document, at most about `ttl` seconds old.

        Only the first call waits for a `/proc` scan; later calls return the cached snapshot at
        once and, when it is stale, refresh it in a background thread (stale-while-revalidate),
        so that a slow scan on a busy machine never shows up as API latency.
        """
        with self._lock:
            cached = self._cached
            stale = time.monotonic() - self._cached_at >= self.ttl
            if cached is not None and stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name="snapshot", daemon=True).start()
        if cached is not None:
            return cached
        with self._scan_lock:
            if self._cached is None:
                self._take()
            assert self._cached is not None
            return self._cached

    def _refresh(self) -> None:
        try:
            with self._scan_lock:
                self._take()
        except Exception:
            log.exception("process snapshot failed")
        finally:
            with self._lock:
                self._refreshing = False

    def _take(self) -> None:
        """One scan (the caller holds `_scan_lock`)."""
        try:
            from ocrtrain.monitor.snapshot import collect
        except ImportError:
            doc = self._fallback()
        else:
            if self._previous is None:
                # Host CPU is measured between two scans; the first scan alone would measure
                # itself (a busy /proc walk: ~100%). A short idle window gives a true reading.
                self._previous = collect(self.journal)
                time.sleep(FIRST_CPU_WINDOW_S)
            snap = collect(self.journal, previous=self._previous)
            self._previous = snap
            doc = to_json(snap)
        with self._lock:
            self._cached, self._cached_at = doc, time.monotonic()

    def invalidate(self) -> None:
        """Mark the snapshot stale (after a launch, stop or cleanup): the next call refreshes."""
        with self._lock:
            self._cached_at = 0.0

    def _fallback(self) -> dict[str, Any]:
        """Without the monitor: active runs from the journal, with their pids and no metrics."""
        import psutil

        from ocrtrain.procman import Role, run_processes

        vm = psutil.virtual_memory()
        runs: list[dict[str, Any]] = []
        for rec in self.journal.list_runs(states=ACTIVE_STATES):
            procs: list[dict[str, Any]] = [
                {
                    "pid": m.pid,
                    "ppid": m.stat.ppid,
                    "role": "trainer" if m.role == Role.TRAINER else "helper",
                    "state": m.stat.state,
                    "cmdline": m.stat.comm,
                    "flags": [],
                }
                for m in run_processes(rec).values()
            ]
            runs.append(
                {
                    "id": rec.id,
                    "name": rec.name,
                    "user": rec.user,
                    "state": str(rec.state),
                    "flags": [],
                    "supervisor_pid": rec.supervisor_pid,
                    "processes": procs,
                }
            )
        return {
            "taken_at": time.time(),
            "host": {
                "cpu_percent": psutil.cpu_percent(interval=None),
                "mem_total": vm.total,
                "mem_used": vm.total - vm.available,
                "gpus": [],
            },
            "runs": runs,
            "orphans": 0,
            "monitor": "unavailable",
        }

    def cleanup(
        self, *, dry_run: bool, run_id: str | None, include_live: bool, grace: float, force: bool
    ) -> dict[str, Any]:
        """The cleanup plan (dry run) or the report of executing it.

        Raises:
            MonitorUnavailable: the monitor's cleanup module is not installed.
        """
        try:
            from ocrtrain.monitor import cleanup
        except ImportError as exc:
            raise MonitorUnavailable(
                "orphan cleanup needs ocrtrain.monitor.cleanup, which is not installed"
            ) from exc
        plan = cleanup.plan(self.journal, run_id=run_id, include_live=include_live, stale=True)
        out: dict[str, Any] = {"dry_run": dry_run, "plan": to_json(plan)}
        if not dry_run:
            report = cleanup.execute(plan, self.journal, grace=grace, force=force)
            out["report"] = to_json(report)
            out["ok"] = bool(report.ok)
            self.invalidate()
        return out

    def startup_hints(self) -> list[str]:
        """The monitor's startup check (left-over processes, stale runs), if it has one."""
        try:
            from ocrtrain.monitor.startup import startup_check
        except ImportError:
            return []
        try:
            return list(startup_check(self.journal))
        except Exception:  # a hint must never stop the UI from starting
            log.exception("startup check failed")
            return []
