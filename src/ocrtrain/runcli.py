"""`ocrtrain run | runs | events | logs | stop | stack | doctor`: the supervisor's command
line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ocrtrain.dist.launch import agent_argv
from ocrtrain.monitor.startup import open_journal
from ocrtrain.procman import doctor as doctor_mod
from ocrtrain.procman import procfs, stacks
from ocrtrain.procman.api import RunHandle, request_stop, run_foreground, start
from ocrtrain.procman.errors import SpawnError, UsageError
from ocrtrain.procman.journal import FINAL_STATES, EventRecord, RunRecord
from ocrtrain.procman.spec import DEFAULT_GRACE_S, RunSpec, parse_seconds, parse_size
from ocrtrain.procman.tojson import to_json


def register(subparsers: Any) -> None:
    """Add the run-management subcommands."""
    p = subparsers.add_parser(
        "run",
        help="supervise a command so that none of its processes outlives it",
        description="Run CMD under the ocrtrain supervisor: own session and cgroup, signals "
        "forwarded, every leftover process ended when it exits, all recorded in the journal.",
    )
    p.add_argument("--name", help="a name for the run (default: the program's name)")
    p.add_argument(
        "--grace",
        default=str(DEFAULT_GRACE_S),
        help="seconds between SIGTERM and SIGKILL at teardown (default: %(default)s)",
    )
    p.add_argument("--detach", action="store_true", help="run in the background; print the id")
    p.add_argument("--max-memory", help="stop the run gracefully above this RSS (e.g. 8G)")
    p.add_argument("--timeout", help="stop the run gracefully after this long (e.g. 90m)")
    p.add_argument("--max-runs", type=int, help="refuse to start while N runs are active")
    p.add_argument("--wait", action="store_true", help="with --max-runs: wait for a free slot")
    p.add_argument("--json", action="store_true", help="with --detach: print the run as JSON")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("runs", help="list runs from the journal")
    p.add_argument("--limit", type=int, default=20, help="show at most N runs (default 20)")
    p.add_argument("--active", action="store_true", help="only starting/running/stopping runs")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser("events", help="the lifecycle events of a run")
    p.add_argument("run", help="run id, unique id prefix, or name")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=cmd_events)

    p = subparsers.add_parser("logs", help="print a run's output log")
    p.add_argument("run", help="run id, unique id prefix, or name")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the run ends")
    p.add_argument("--tail", type=int, help="only the last N lines")
    p.set_defaults(func=cmd_logs)

    p = subparsers.add_parser("stop", help="stop a run: SIGTERM, then SIGKILL after the grace")
    p.add_argument("run", help="run id, unique id prefix, or name")
    p.add_argument("--force", action="store_true", help="SIGKILL every process of the run now")
    p.add_argument("--grace", help="seconds before SIGKILL (default: the run's own)")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for the end")
    p.add_argument("--json", action="store_true", help="print the final record as JSON")
    p.set_defaults(func=cmd_stop)

    p = subparsers.add_parser(
        "stack",
        help="print the Python stack of every process of a run (a hang's report)",
        description="Ask each process of a running run for its Python stacks (all threads), "
        "one at a time; the stacks also go into the run's log. Processes that are not "
        "ocrtrain's Python (a shell, a C program) are listed without one.",
    )
    p.add_argument("run", help="run id, unique id prefix, or name")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=cmd_stack)

    p = subparsers.add_parser("doctor", help="which teardown tiers work on this machine, and why")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=cmd_doctor)


def _spec_from_args(args: argparse.Namespace) -> RunSpec:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command given: use 'ocrtrain run [OPTIONS] -- CMD [ARG...]'")
    if args.max_runs is not None and args.max_runs < 1:
        raise UsageError(f"--max-runs must be at least 1, got {args.max_runs}")
    return RunSpec(
        argv=tuple(agent_argv(cmd)),  # torchrun: as ocrtrain's agent (SIGUSR1 to the ranks)
        name=args.name,
        grace=parse_seconds(args.grace, "grace"),
        detach=args.detach,
        max_memory=parse_size(args.max_memory) if args.max_memory else None,
        timeout=parse_seconds(args.timeout, "timeout") if args.timeout else None,
        max_runs=args.max_runs,
        wait_for_slot=args.wait,
    )


def cmd_run(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)  # validate everything before touching the journal
    journal = open_journal()
    if spec.detach:
        handle = start(spec, journal)
        rec = handle.record()
        if args.json:
            print(json.dumps(to_json(rec)))
        else:
            print(rec.id)
        if rec.state in FINAL_STATES and rec.exit_code in (126, 127):
            print(f"ERROR: {rec.reason}", file=sys.stderr)
            return int(rec.exit_code)
        return 0
    try:
        _, code = run_foreground(spec, journal)
    except SpawnError as exc:
        print(f"ERROR: ocrtrain run: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _duration(rec: RunRecord) -> str:
    if rec.started_at is None:
        return "-"
    seconds = (rec.ended_at or time.time()) - rec.started_at
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def cmd_runs(args: argparse.Namespace) -> int:
    journal = open_journal()
    from ocrtrain.procman.journal import ACTIVE_STATES

    runs = journal.list_runs(limit=args.limit, states=ACTIVE_STATES if args.active else None)
    if args.json:
        print(json.dumps([to_json(r) for r in runs], indent=1))
        return 0
    print(f"{'ID':24} {'NAME':16} {'STATE':10} {'EXIT':>5} {'STARTED':19} {'TIME':>7}  COMMAND")
    for r in runs:
        code = "" if r.exit_code is None else str(r.exit_code)
        cmd = " ".join(r.argv)
        print(
            f"{r.id:24} {r.name[:16]:16} {r.state!s:10} {code:>5} {_when(r.started_at):19} "
            f"{_duration(r):>7}  {cmd[:60]}"
        )
    return 0


def _format_event(e: EventRecord) -> str:
    stamp = datetime.fromtimestamp(e.ts).strftime("%H:%M:%S.%f")[:-3]
    parts = [stamp, f"{e.kind:17}"]
    if e.pid is not None:
        parts.append(f"pid={e.pid}")
    if e.signal is not None:
        try:
            import signal as _signal

            parts.append(_signal.Signals(e.signal).name)
        except ValueError:
            parts.append(f"signal={e.signal}")
    if e.detail:
        parts.append(" ".join(f"{k}={v}" for k, v in e.detail.items()))
    return "  ".join(parts)


def cmd_events(args: argparse.Namespace) -> int:
    journal = open_journal()
    run = journal.resolve(args.run)
    events = journal.events(run.id)
    if args.json:
        print(json.dumps([to_json(e) for e in events], indent=1))
        return 0
    print(f"run {run.id} ({run.name}): {run.state}" + (f", {run.reason}" if run.reason else ""))
    for e in events:
        print(_format_event(e))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    journal = open_journal()
    run = journal.resolve(args.run)
    path = Path(run.log_path)
    out = sys.stdout.buffer
    if not path.exists() and not args.follow:
        return 0
    offset = 0
    if args.tail is not None and path.exists():
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)[-args.tail :] if args.tail > 0 else []
        out.write(b"".join(lines))
        out.flush()
        offset = len(data)
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
                offset += len(chunk)
        if not args.follow:
            return 0
        rec = journal.get_run(run.id)
        if rec is None or rec.state in FINAL_STATES:
            # One last read: the supervisor closes the log before it records the end.
            if path.exists() and path.stat().st_size > offset:
                continue
            return 0
        time.sleep(0.2)


def cmd_stop(args: argparse.Namespace) -> int:
    grace = parse_seconds(args.grace, "grace") if args.grace is not None else None
    journal = open_journal()
    run = journal.resolve(args.run)
    request_stop(journal, run, grace=grace, force=args.force)
    if args.no_wait:
        return 0
    handle = RunHandle(journal, run.id)
    limit = (0.0 if args.force else (run.grace if grace is None else grace)) + 15.0
    try:
        rec = handle.wait(timeout=limit)
    except TimeoutError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(to_json(rec)))
    else:
        print(f"{rec.id}: {rec.state}" + (f" ({rec.reason})" if rec.reason else ""))
    return 0


def cmd_stack(args: argparse.Namespace) -> int:
    journal = open_journal()
    run = journal.resolve(args.run)
    if run.state in FINAL_STATES:
        raise UsageError(f"run {run.id} has ended ({run.state}): it has no stacks to show")
    table = procfs.scan()
    pids = sorted(
        (pid for pid, t in table.items() if t.run_id == run.id and t.stat.state != "Z"),
        key=lambda pid: (table[pid].stat.start, pid),
    )
    dumps = stacks.collect_stacks(pids, Path(run.log_path), procfs.read_cmdline)
    if args.json:
        print(json.dumps([dataclasses.asdict(d) for d in dumps], indent=1))
        return 0
    for d in dumps:
        print(f"== pid {d.pid}: {' '.join(d.cmdline)[:120]}")
        print(
            d.text.rstrip("\n") if d.answered else "   (no Python stack: not an ocrtrain process)"
        )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_mod.check()
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for tier in report["tiers"]:
        mark = "ok " if tier["active"] else "-- "
        print(f"{mark} {tier['name']:14} {tier['detail']}")
    print(f"state: {report['home']}")
    return 0 if all(t["active"] or not t["required"] for t in report["tiers"]) else 1
