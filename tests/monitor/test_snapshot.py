"""`collect()` / `ocrtrain ps` on real supervised runs: the tree, roles, fields, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

from mon_helpers import all_pids, identity, ocrtrain, run_of, start_run, wait_until

from ocrtrain.monitor.render import snapshot_renderable
from ocrtrain.monitor.snapshot import (
    HostView,
    MonitorSnapshot,
    ProcessView,
    RunView,
    collect,
)
from ocrtrain.procman import to_json
from ocrtrain.procman.journal import Journal

PROCESS_KEYS = {
    "pid", "ppid", "role", "state", "age_s", "cpu_percent", "rss_bytes", "threads",
    "io_read_bytes", "io_write_bytes", "gpu_mem_bytes", "gpu_util", "cmdline", "flags",
    "global_rank", "local_rank", "node_rank", "step", "net_sent_bytes", "net_recv_bytes",
}  # fmt: skip
RUN_KEYS = {"id", "name", "user", "state", "flags", "supervisor_pid", "processes"}


def _stop(handle, procs) -> None:  # type: ignore[no-untyped-def]
    handle.stop(grace=1.0)
    handle.wait(timeout=20)


def test_live_run_tree_roles_and_fields(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    handle, info = start_run(journal, tmp_path, "--workers", "2", "--ranks", "1", name="tree")
    rec = handle.record()
    procs.add(*(identity(p) for p in [*all_pids(info), rec.supervisor_pid, rec.watchdog_pid]))
    try:
        snap = collect(journal)
        doc = to_json(snap)
        json.dumps(doc)  # serialisable as is
        assert set(doc) == {"taken_at", "host", "runs", "orphans"}
        assert set(doc["host"]) == {"cpu_percent", "mem_total", "mem_used", "gpus", "nics"}
        assert doc["host"]["gpus"] == []  # no GPU here: N/A, not an error
        run = run_of(doc, rec.id)
        assert set(run) == RUN_KEYS
        assert run["name"] == "tree" and run["state"] == "running" and run["flags"] == []
        assert run["supervisor_pid"] == rec.supervisor_pid
        roles = {p["pid"]: p["role"] for p in run["processes"]}
        rank = info["ranks"][0]
        assert roles == {
            rec.supervisor_pid: "supervisor",
            rec.watchdog_pid: "watchdog",
            info["main"]: "trainer",
            **{w: "worker" for w in info["workers"]},
            rank["main"]: "rank",
            **{w: "worker" for w in rank["workers"]},
        }
        places = {p["pid"]: (p["global_rank"], p["local_rank"]) for p in run["processes"]}
        assert places[rank["main"]] == (1, 1), "a rank's place, from its launcher's variables"
        assert places[rank["workers"][0]] == (None, None), "workers are no ranks"
        for p in run["processes"]:
            assert set(p) == PROCESS_KEYS
            assert p["flags"] == []
            assert p["rss_bytes"] > 0 and p["threads"] >= 1 and p["age_s"] >= 0
            assert p["gpu_mem_bytes"] is None and p["gpu_util"] is None
            assert p["io_read_bytes"] is not None  # we are root or the owner
        assert doc["orphans"] == 0 or all(
            r["id"] != rec.id for r in doc["runs"] if "orphan" in r["flags"]
        )
        # The CLI prints the same document.
        out = ocrtrain("ps", "--json")
        assert out.returncode == 0, out.stderr
        cli_run = run_of(json.loads(out.stdout), rec.id)
        assert {p["pid"]: p["role"] for p in cli_run["processes"]} == roles
        text = ocrtrain("ps")
        assert text.returncode == 0, text.stderr
        assert rec.id in text.stdout and "trainer" in text.stdout
        # A second snapshot measures CPU over the interval instead of the lifetime.
        again = collect(journal, previous=snap)
        assert all(p.cpu_percent is not None for r in again.runs for p in r.processes)
    finally:
        _stop(handle, procs)


def test_rendering_never_raises_on_unreadable_fields() -> None:
    p = ProcessView(
        pid=1, start=0, ppid=0, uid=None, role="helper", state="S", age_s=None,
        cpu_percent=None, rss_bytes=None, threads=None, io_read_bytes=None,
        io_write_bytes=None, gpu_mem_bytes=None, gpu_util=None, cmdline=None, flags=(),
        found_by="tag", cpu_ticks=0,
    )  # fmt: skip
    run = RunView("x", None, None, None, ("orphan",), None, (p,))
    snap = MonitorSnapshot(0.0, HostView(None, None, None, ()), (run,))
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(snapshot_renderable(snap))
    text = console.export_text()
    assert "N/A" in text and "orphan" in text
    assert json.loads(json.dumps(to_json(snap)))["runs"][0]["processes"][0]["rss_bytes"] is None


def test_ps_json_is_lean_and_lists_nothing_for_an_empty_journal(journal: Journal) -> None:
    out = ocrtrain("ps", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    # Other runs may exist on this machine, but none of this (empty) journal is active.
    assert all(r["state"] is None for r in doc["runs"])


def test_watch_and_json_conflict() -> None:
    out = ocrtrain("ps", "--json", "--watch", "1")
    assert out.returncode == 2 and out.stderr.startswith("ERROR:")


def test_watch_redraws_until_interrupted(journal: Journal, procs) -> None:  # type: ignore[no-untyped-def]
    import os
    import pty
    import signal
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrtrain", "ps", "--watch", "0.2"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    procs.add(identity(proc.pid))
    seen = b""
    try:

        def drain() -> None:
            nonlocal seen
            import select

            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # EIO: the watcher closed its terminal
                    pass

        def redrawn() -> bool:
            drain()
            return seen.count(b"orphans") >= 2  # the header line, drawn at least twice

        def exited() -> bool:
            drain()  # as a terminal would: a full pty buffer would block the watcher's writes
            return proc.poll() is not None

        wait_until(redrawn, 20, "two redraws")
        proc.send_signal(signal.SIGINT)
        wait_until(exited, 10, "ps --watch to exit on Ctrl+C")
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
