"""The run journal: one SQLite database (WAL) under `$OCRTRAIN_HOME` holding a row per run,
a row per lifecycle event and bounded resource samples.

Many supervisors, watchdogs and CLIs write at once: every write is one short transaction
(`BEGIN IMMEDIATE`) under a generous busy timeout, so none is lost and none is half-applied.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from ocrtrain.procman.errors import RunNotFound
from ocrtrain.procman.home import ensure_home
from ocrtrain.procman.tojson import to_json

JOURNAL_FILE = "journal.sqlite3"
SCHEMA_VERSION = 3  # 2: a run's job (id, node, nodes, rendezvous) and its ranks; 3: rank samples
SAMPLES_PER_RUN = 720  # one hour at the default 5 s interval


class RunState(StrEnum):
    """Where a run is in its life. The last four are final."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"  # main process exited 0
    FAILED = "failed"  # non-zero exit, death by signal, or the command could not start
    STOPPED = "stopped"  # ended after a stop request or a forwarded stop signal
    LOST = "lost"  # the supervisor vanished; the watchdog or a later command closed the run


FINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED, RunState.LOST})
ACTIVE_STATES = frozenset({RunState.STARTING, RunState.RUNNING, RunState.STOPPING})


class EventKind(StrEnum):
    """Lifecycle events, one journal row each."""

    CREATED = "created"
    STARTED = "started"
    SPAWN_FAILED = "spawn_failed"
    SIGNAL_RECEIVED = "signal_received"
    SIGNAL_SENT = "signal_sent"
    STOP_REQUESTED = "stop_requested"
    CHILD_EXITED = "child_exited"
    SURVIVORS_FOUND = "survivors_found"
    ESCALATED = "escalated"
    REAPED = "reaped"
    SURVIVOR_REMAINS = "survivor_remains"
    TEARDOWN_DONE = "teardown_done"
    LIMIT_EXCEEDED = "limit_exceeded"
    WATCHDOG_STARTED = "watchdog_started"
    WATCHDOG_LOST = "watchdog_lost"
    SUPERVISOR_LOST = "supervisor_lost"
    MARKED_LOST = "marked_lost"
    CLEANUP = "cleanup"
    STALLED = "stalled"  # a rank of a job made no progress for dist.timeout_s
    FINISHED = "finished"
    NOTE = "note"


@dataclass(frozen=True)
class RunRecord:
    """A run as the journal knows it. Process identities are (pid, start ticks) pairs."""

    id: str
    name: str
    argv: list[str]
    cwd: str
    user: str
    host: str
    state: RunState
    created_at: float
    grace: float
    log_path: str
    run_dir: str
    detached: bool = False
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    child_pid: int | None = None
    child_start: int | None = None
    pgid: int | None = None
    sid: int | None = None
    cgroup: str | None = None
    watchdog_pid: int | None = None
    watchdog_start: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    reason: str | None = None
    tiers: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None  # a run that is one node of a distributed job
    node_rank: int | None = None
    num_nodes: int | None = None
    rdzv_endpoint: str | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class EventRecord:
    """One lifecycle event."""

    seq: int
    run_id: str
    ts: float
    kind: str
    pid: int | None
    signal: int | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RankRecord:
    """One rank of a distributed job, as the process (pid, start ticks) that ran it."""

    pid: int
    start: int
    global_rank: int
    local_rank: int
    node_rank: int


@dataclass(frozen=True)
class RankSample:
    """Resource use of one rank of a distributed job at one moment: the rank's process and
    its descendants (its DataLoader workers)."""

    global_rank: int
    local_rank: int
    node_rank: int
    pid: int
    n_procs: int
    cpu_percent: float
    rss_bytes: int
    gpu_bytes: int | None
    net_sent_bytes: int | None  # TCP bytes of the rank's sockets (None: not readable)
    net_recv_bytes: int | None
    step: int | None  # the step the rank last reported


@dataclass(frozen=True)
class SampleRecord:
    """Resource use of a run's processes at one moment, and of each of its ranks."""

    run_id: str
    ts: float
    n_procs: int
    cpu_percent: float
    rss_bytes: int
    gpu_bytes: int | None
    ranks: tuple[RankSample, ...] = ()


_JSON_COLUMNS = {"argv", "tiers", "limits"}
_RANK_SAMPLE_COLUMNS = [f.name for f in fields(RankSample)]
_RUN_COLUMNS = [f.name for f in fields(RunRecord)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, argv TEXT NOT NULL, cwd TEXT NOT NULL,
    user TEXT NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
    grace REAL NOT NULL, log_path TEXT NOT NULL, run_dir TEXT NOT NULL, detached INTEGER NOT NULL,
    supervisor_pid INTEGER, supervisor_start INTEGER, child_pid INTEGER, child_start INTEGER,
    pgid INTEGER, sid INTEGER, cgroup TEXT, watchdog_pid INTEGER, watchdog_start INTEGER,
    started_at REAL, ended_at REAL, exit_code INTEGER, exit_signal INTEGER, reason TEXT,
    tiers TEXT NOT NULL, limits TEXT NOT NULL,
    job_id TEXT, node_rank INTEGER, num_nodes INTEGER, rdzv_endpoint TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE INDEX IF NOT EXISTS runs_name ON runs(name, created_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts REAL NOT NULL,
    kind TEXT NOT NULL, pid INTEGER, signal INTEGER, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, seq);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL, ts REAL NOT NULL, n_procs INTEGER NOT NULL, cpu_percent REAL NOT NULL,
    rss_bytes INTEGER NOT NULL, gpu_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id, ts);
CREATE TABLE IF NOT EXISTS ranks (
    run_id TEXT NOT NULL, pid INTEGER NOT NULL, start INTEGER NOT NULL,
    global_rank INTEGER NOT NULL, local_rank INTEGER NOT NULL, node_rank INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ranks_run ON ranks(run_id, global_rank);
CREATE TABLE IF NOT EXISTS rank_samples (
    run_id TEXT NOT NULL, ts REAL NOT NULL, global_rank INTEGER NOT NULL,
    local_rank INTEGER NOT NULL, node_rank INTEGER NOT NULL, pid INTEGER NOT NULL,
    n_procs INTEGER NOT NULL, cpu_percent REAL NOT NULL, rss_bytes INTEGER NOT NULL,
    gpu_bytes INTEGER, net_sent_bytes INTEGER, net_recv_bytes INTEGER, step INTEGER
);
CREATE INDEX IF NOT EXISTS rank_samples_run ON rank_samples(run_id, ts);
"""
# From each older schema version to the next; then _SCHEMA adds any missing table.
_MIGRATIONS = {
    1: [
        "ALTER TABLE runs ADD COLUMN job_id TEXT",
        "ALTER TABLE runs ADD COLUMN node_rank INTEGER",
        "ALTER TABLE runs ADD COLUMN num_nodes INTEGER",
        "ALTER TABLE runs ADD COLUMN rdzv_endpoint TEXT",
    ],
    2: [],  # rank_samples is a new table: _SCHEMA creates it
}


def new_run_id() -> str:
    """A sortable, unique id: UTC time plus 6 random hex digits (e.g. 20261126-083512-a1b2c3)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class Journal:
    """Handle on the journal database; safe to share between threads of one process."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = ensure_home(home)
        self.path = self.home / JOURNAL_FILE
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._init_schema()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------

    def _init_schema(self) -> None:
        with self._lock:
            if self._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            for attempt in range(50):
                try:
                    self._conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    # Another process is creating the database right now.
                    time.sleep(0.05 * (attempt + 1))
            with self._write() as c:
                # Read again inside the write lock: another process may have migrated it.
                version = c.execute("PRAGMA user_version").fetchone()[0]
                tables = c.execute("SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall()
                while tables and version in _MIGRATIONS:
                    for statement in _MIGRATIONS[version]:
                        c.execute(statement)
                    version += 1
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it does."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params))

    @staticmethod
    def _run_from_row(row: sqlite3.Row) -> RunRecord:
        data = {k: row[k] for k in row.keys()}  # noqa: SIM118 (sqlite3.Row has no __iter__ of keys)
        for key in _JSON_COLUMNS:
            data[key] = json.loads(data[key])
        data["state"] = RunState(data["state"])
        data["detached"] = bool(data["detached"])
        return RunRecord(**data)

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, run: RunRecord, max_active: int | None = None) -> bool:
        """Insert a new run and its `created` event in one transaction.

        With `max_active`, the run is inserted only while fewer runs are active (the count and
        the insert are one transaction, so concurrent starts cannot overshoot).

        Returns:
            False if `max_active` runs were already active (nothing written).
        """
        values = to_json(run)
        for key in _JSON_COLUMNS:
            values[key] = json.dumps(values[key])
        values["detached"] = int(run.detached)
        cols = ", ".join(_RUN_COLUMNS)
        marks = ", ".join("?" for _ in _RUN_COLUMNS)
        active = [str(s) for s in ACTIVE_STATES]
        with self._write() as c:
            if max_active is not None:
                count = c.execute(
                    f"SELECT COUNT(*) FROM runs WHERE state IN ({', '.join('?' for _ in active)})",
                    active,
                ).fetchone()[0]
                if count >= max_active:
                    return False
            c.execute(
                f"INSERT INTO runs ({cols}) VALUES ({marks})", [values[k] for k in _RUN_COLUMNS]
            )
            self._insert_event(c, run.id, EventKind.CREATED, None, None, {"argv": run.argv})
        return True

    def update_run(self, run_id: str, **changes: Any) -> None:
        """Set some columns of a run (unknown column names are a programming error)."""
        if not changes:
            return
        for key in changes:
            if key not in _RUN_COLUMNS or key == "id":
                raise KeyError(key)
        values = [
            json.dumps(v) if k in _JSON_COLUMNS else (str(v) if isinstance(v, RunState) else v)
            for k, v in changes.items()
        ]
        assignments = ", ".join(f"{k} = ?" for k in changes)
        with self._write() as c:
            c.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*values, run_id])

    def transition(
        self,
        run_id: str,
        state: RunState,
        event: EventKind | None = None,
        *,
        only_from: Iterable[RunState] | None = None,
        detail: dict[str, Any] | None = None,
        **changes: Any,
    ) -> bool:
        """Move a run to `state` (and record `event`) atomically.

        With `only_from`, the move happens only if the run is currently in one of those states,
        so that two writers (say a watchdog and a late supervisor) never overwrite a final state.

        Returns:
            True if the run changed state.
        """
        cols = {"state": str(state), **changes}
        if state in FINAL_STATES and "ended_at" not in cols:
            cols["ended_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in cols)
        params: list[Any] = [json.dumps(v) if k in _JSON_COLUMNS else v for k, v in cols.items()]
        sql = f"UPDATE runs SET {assignments} WHERE id = ?"
        params.append(run_id)
        if only_from is not None:
            allowed = [str(s) for s in only_from]
            sql += f" AND state IN ({', '.join('?' for _ in allowed)})"
            params += allowed
        with self._write() as c:
            changed = c.execute(sql, params).rowcount == 1
            if changed and event is not None:
                self._insert_event(c, run_id, event, None, None, detail or {"state": str(state)})
        return changed

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._run_from_row(rows[0]) if rows else None

    def resolve(self, ref: str) -> RunRecord:
        """Find a run by exact id, unique id prefix, or name (the latest run of that name).

        Raises:
            RunNotFound: nothing matches, or a prefix is ambiguous.
        """
        ref = ref.strip()
        if not ref:
            raise RunNotFound("empty run id")
        exact = self.get_run(ref)
        if exact is not None:
            return exact
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at DESC LIMIT 2",
            (escaped + "%",),
        )
        if len(rows) == 1:
            return self._run_from_row(rows[0])
        if len(rows) > 1:
            raise RunNotFound(f"run id prefix {ref!r} is ambiguous; give more characters")
        rows = self._query(
            "SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC LIMIT 1", (ref,)
        )
        if rows:
            return self._run_from_row(rows[0])
        raise RunNotFound(f"no run with id or name {ref!r} (see 'ocrtrain runs')")

    def list_runs(
        self, limit: int | None = None, states: Iterable[RunState] | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if states is not None:
            wanted = [str(s) for s in states]
            sql += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        sql += " ORDER BY created_at DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._run_from_row(r) for r in self._query(sql, params)]

    def count_active(self) -> int:
        """How many runs are starting, running or stopping."""
        wanted = [str(s) for s in ACTIVE_STATES]
        rows = self._query(
            f"SELECT COUNT(*) FROM runs WHERE state IN ({', '.join('?' for _ in wanted)})", wanted
        )
        return int(rows[0][0])

    # -- events ---------------------------------------------------------------------------

    @staticmethod
    def _insert_event(
        c: sqlite3.Connection,
        run_id: str,
        kind: EventKind | str,
        pid: int | None,
        signal: int | None,
        detail: dict[str, Any],
    ) -> int:
        cur = c.execute(
            "INSERT INTO events (run_id, ts, kind, pid, signal, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, time.time(), str(kind), pid, signal, json.dumps(detail, default=str)),
        )
        return int(cur.lastrowid or 0)

    def add_event(
        self,
        run_id: str,
        kind: EventKind | str,
        pid: int | None = None,
        signal: int | None = None,
        **detail: Any,
    ) -> int:
        """Record one lifecycle event; returns its sequence number."""
        with self._write() as c:
            return self._insert_event(c, run_id, kind, pid, signal, detail)

    def events(
        self, run_id: str, after_seq: int = 0, kinds: Iterable[str] | None = None
    ) -> list[EventRecord]:
        """A run's events in order (optionally only those after `after_seq`, of some kinds)."""
        sql = "SELECT * FROM events WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after_seq]
        if kinds is not None:
            wanted = [str(k) for k in kinds]
            sql += f" AND kind IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        rows = self._query(sql + " ORDER BY seq", params)
        return [
            EventRecord(
                seq=r["seq"],
                run_id=r["run_id"],
                ts=r["ts"],
                kind=r["kind"],
                pid=r["pid"],
                signal=r["signal"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    # -- ranks ----------------------------------------------------------------------------

    def record_rank(self, run_id: str, rank: RankRecord) -> None:
        """Record a rank of the distributed job that run `run_id` is one node of."""
        with self._write() as c:
            c.execute(
                "INSERT INTO ranks (run_id, pid, start, global_rank, local_rank, node_rank)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, rank.pid, rank.start, rank.global_rank, rank.local_rank, rank.node_rank),
            )

    def ranks(self, run_id: str) -> list[RankRecord]:
        """The ranks a run recorded, by global rank."""
        rows = self._query(
            "SELECT pid, start, global_rank, local_rank, node_rank FROM ranks WHERE run_id = ?"
            " ORDER BY global_rank",
            (run_id,),
        )
        return [RankRecord(*tuple(r)) for r in rows]

    # -- samples --------------------------------------------------------------------------

    def add_sample(self, sample: SampleRecord, keep: int = SAMPLES_PER_RUN) -> None:
        """Store a resource sample and its ranks' samples in one transaction, keeping at most
        `keep` per run (oldest dropped, with their ranks')."""
        with self._write() as c:
            c.execute(
                "INSERT INTO samples (run_id, ts, n_procs, cpu_percent, rss_bytes, gpu_bytes)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sample.run_id,
                    sample.ts,
                    sample.n_procs,
                    sample.cpu_percent,
                    sample.rss_bytes,
                    sample.gpu_bytes,
                ),
            )
            c.executemany(
                f"INSERT INTO rank_samples (run_id, ts, {', '.join(_RANK_SAMPLE_COLUMNS)})"
                f" VALUES (?, ?, {', '.join('?' for _ in _RANK_SAMPLE_COLUMNS)})",
                [
                    (sample.run_id, sample.ts, *(getattr(r, k) for k in _RANK_SAMPLE_COLUMNS))
                    for r in sample.ranks
                ],
            )
            oldest = c.execute(
                "SELECT ts FROM samples WHERE run_id = ? ORDER BY ts DESC LIMIT 1 OFFSET ?",
                (sample.run_id, keep - 1),
            ).fetchone()
            if oldest is not None:
                for table in ("samples", "rank_samples"):
                    c.execute(
                        f"DELETE FROM {table} WHERE run_id = ? AND ts < ?",
                        (sample.run_id, oldest[0]),
                    )

    def samples(self, run_id: str, limit: int = SAMPLES_PER_RUN) -> list[SampleRecord]:
        """A run's latest samples, oldest first, each with its ranks' samples."""
        rows = self._query(
            "SELECT * FROM samples WHERE run_id = ? ORDER BY ts DESC LIMIT ?", (run_id, limit)
        )
        ranks: dict[float, list[RankSample]] = {}
        if rows:
            rank_rows = self._query(
                f"SELECT ts, {', '.join(_RANK_SAMPLE_COLUMNS)} FROM rank_samples"
                " WHERE run_id = ? AND ts >= ? ORDER BY ts, global_rank",
                (run_id, rows[-1]["ts"]),
            )
            for r in rank_rows:
                ranks.setdefault(r["ts"], []).append(
                    RankSample(**{k: r[k] for k in _RANK_SAMPLE_COLUMNS})
                )
        return [
            SampleRecord(
                run_id=r["run_id"],
                ts=r["ts"],
                n_procs=r["n_procs"],
                cpu_percent=r["cpu_percent"],
                rss_bytes=r["rss_bytes"],
                gpu_bytes=r["gpu_bytes"],
                ranks=tuple(ranks.get(r["ts"], ())),
            )
            for r in reversed(rows)
        ]
