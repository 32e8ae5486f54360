"""`ocrtrain ps` and `ocrtrain cleanup`: see every run's processes, remove what is left over.

This module is imported by every `ocrtrain` command, so it imports nothing heavy at module
level: the snapshot code, Rich and NVML are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ocrtrain.procman import UsageError, to_json

if TYPE_CHECKING:
    from ocrtrain.procman import Journal

DEFAULT_WATCH_S = 2.0


def register(subparsers: Any) -> None:
    """Add `ps` and `cleanup` to the `ocrtrain` parser."""
    p = subparsers.add_parser(
        "ps",
        help="every process of every run on this machine, as a tree",
        description="List every ocrtrain run on this machine with its processes (supervisor, "
        "watchdog, trainer, ranks, DataLoader workers, helpers). CPU %% is the lifetime average "
        "in a single listing and the use since the previous refresh with --watch.",
    )
    add_ps_arguments(p)
    p.set_defaults(func=cmd_ps)

    p = subparsers.add_parser(
        "cleanup",
        help="end orphaned processes and close stale runs",
        description="End processes of crashed runs (orphans) and close runs whose processes are "
        "gone (stale) as lost: SIGTERM, the grace, then SIGKILL. Shows the plan and asks "
        "(in a terminal) unless --yes; --dry-run signals nothing.",
    )
    add_cleanup_arguments(p)
    p.set_defaults(func=cmd_cleanup)


def add_ps_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document for scripts")
    p.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH_S,
        type=float,
        metavar="SECONDS",
        help=f"redraw in place every SECONDS (default {DEFAULT_WATCH_S:g})",
    )
    _add_match_arguments(p, "list")
    p.add_argument("--no-gpu", action="store_true", help="skip NVML (GPU columns show N/A)")


def _add_match_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    """`--match` / `--all-users`, shared by ps and cleanup."""
    p.add_argument(
        "--match",
        metavar="PATTERN",
        help=f"also {verb} pre-ocrtrain processes: python running a script whose path matches",
    )
    p.add_argument(
        "--all-users",
        action="store_true",
        help=(
            "other users' processes too (root only): their orphans of runs this journal "
            "does not know, and --match ones"
        ),
    )


def add_cleanup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print what would be done; signal none")
    p.add_argument("-y", "--yes", action="store_true", help="act without asking")
    p.add_argument("--force", action="store_true", help="SIGKILL at once, no grace")
    p.add_argument("--grace", default="5", help="seconds between SIGTERM and SIGKILL (default 5)")
    p.add_argument("--run", metavar="ID", help="only this run (id, id prefix or name)")
    p.add_argument(
        "--all", action="store_true", help="also stop live runs (asks in a terminal unless --yes)"
    )
    p.add_argument(
        "--stale",
        action="store_true",
        help="orphans and stale runs only (the default; spelled out for boot scripts)",
    )
    p.add_argument("--no-stale", action="store_true", help="do not close stale runs")
    _add_match_arguments(p, "end")
    p.add_argument("--json", action="store_true", help="JSON for scripts")


def _check_all_users(args: argparse.Namespace) -> None:
    if args.all_users and os.geteuid() != 0:
        raise UsageError("--all-users needs root (only root may see other users' processes)")


def _journal() -> Journal:
    """The journal as it is: ps shows stale runs and orphans itself, and a dry run of cleanup
    must not change anything (other commands run the startup check)."""
    from ocrtrain.procman import Journal

    return Journal()


def cmd_ps(args: argparse.Namespace) -> int:
    """`ocrtrain ps`.

    Raises:
        UsageError: bad options.
    """
    _check_all_users(args)
    if args.watch is not None and args.json:
        raise UsageError("--watch and --json do not go together")
    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch needs a positive number of seconds, got {args.watch}")
    from ocrtrain.monitor.snapshot import MonitorSnapshot, collect

    journal = _journal()
    gpu = not args.no_gpu

    def take(previous: MonitorSnapshot | None) -> MonitorSnapshot:
        return collect(
            journal, previous=previous, match=args.match, all_users=args.all_users, gpu=gpu
        )

    if args.watch is not None:
        from ocrtrain.monitor.render import watch

        return watch(take, args.watch)
    snap = take(None)
    if args.json:
        sys.stdout.write(json.dumps(to_json(snap)) + "\n")
        return 0
    from ocrtrain.monitor.render import print_snapshot

    print_snapshot(snap)
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_cleanup(args: argparse.Namespace) -> int:  # noqa: PLR0912 - one branch per option
    """`ocrtrain cleanup`: 0 when everything planned was ended, 1 when something survived.

    Raises:
        UsageError: bad options or an unknown run.
    """
    from ocrtrain.monitor import cleanup
    from ocrtrain.monitor.render import plan_lines, report_lines
    from ocrtrain.procman import parse_seconds

    if args.stale and args.all:
        raise UsageError("--stale and --all contradict each other")
    if args.stale and args.no_stale:
        raise UsageError("--stale and --no-stale contradict each other")
    _check_all_users(args)
    if args.match and args.run:
        raise UsageError("--match and --run do not go together (matched processes have no run)")
    grace = parse_seconds(args.grace, "grace")
    journal = _journal()
    plan = cleanup.plan(
        journal,
        run_id=args.run,
        include_live=args.all,
        stale=not args.no_stale,
        match=args.match,
        all_users=args.all_users,
    )
    act = not args.dry_run
    if act and not args.yes and not plan.empty:
        if sys.stdin.isatty() and sys.stdout.isatty() and not args.json:
            print("\n".join(plan_lines(plan, dry_run=False)))
            what = "stop live runs and end these processes" if args.all else "go ahead"
            act = _confirm(f"{what}?")
            if not act:
                print("nothing done", file=sys.stderr)
                return 0
        else:
            act = False
            print("HINT: not a terminal and no --yes: showing the plan only", file=sys.stderr)
    if not act:
        if args.json:
            print(json.dumps({"dry_run": True, "plan": to_json(plan)}))
        else:
            print("\n".join(plan_lines(plan, dry_run=True)))
        return 0
    report = cleanup.execute(plan, journal, grace=grace, force=args.force)
    if args.json:
        print(json.dumps({"dry_run": False, "plan": to_json(plan), "report": to_json(report)}))
    else:
        print("\n".join(report_lines(report)))
    if not report.ok:
        print(
            f"ERROR: {len(report.survived)} process(es) could not be ended (see above)",
            file=sys.stderr,
        )
        return 1
    return 0
