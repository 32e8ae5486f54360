"""The UI's view of the monitor (process snapshots, orphan cleanup, startup hints).

The monitor is imported lazily so that the UI keeps serving runs and logs when it is missing or
broken; snapshots are cached briefly so that many browser tabs cost one `/proc` scan.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ocrtrain.procman.journal import ACTIVE_STATES, Journal

log = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 1.0


class MonitorUnavailable(RuntimeError):
    """The monitor module (or one of its functions) is not installed."""


class MonitorBridge:
    """Cached process snapshots; CPU % is measured between consecutive snapshots."""

    def __init__(self, journal: Journal, ttl: float = SNAPSHOT_TTL_S) -> None:
        self.journal = journal
        self.ttl = ttl
        self._lock = threading.Lock()
        self._previous: Any = None
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    def snapshot(self) -> dict[str, Any]:
        """The `ocrtrain ps --json` document (at most `ttl` seconds old)."""
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached_at < self.ttl:
                return self._cached
            try:
                from ocrtrain.monitor.snapshot import collect
            except ImportError:
                doc = self._fallback()
            else:
                snap = collect(self.journal, previous=self._previous)
                self._previous = snap
                doc = snap.to_dict()
            self._cached, self._cached_at = doc, time.monotonic()
            return doc

    def invalidate(self) -> None:
        """Forget the cached snapshot (after a launch, stop or cleanup)."""
        with self._lock:
            self._cached = None

    def _fallback(self) -> dict[str, Any]:
        """Without the monitor: active runs from the journal, with their pids and no metrics."""
        import psutil

        from ocrtrain.procman.api import run_processes

        vm = psutil.virtual_memory()
        runs: list[dict[str, Any]] = []
        for rec in self.journal.list_runs(states=ACTIVE_STATES):
            procs: list[dict[str, Any]] = [
                {
                    "pid": pid,
                    "ppid": st.ppid,
                    "role": "trainer" if pid == rec.child_pid else "helper",
                    "state": st.state,
                    "cmdline": st.comm,
                    "flags": [],
                }
                for pid, st in run_processes(rec).items()
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
        out: dict[str, Any] = {"dry_run": dry_run, "plan": plan.to_dict()}
        if not dry_run:
            report = cleanup.execute(plan, self.journal, grace=grace, force=force)
            out["report"] = report.to_dict()
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
