"""Text rendering of snapshots and cleanup plans/reports (Rich), and `--watch`.

Rendering never raises: a field that is None or malformed shows as "N/A".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ocrtrain.monitor.cleanup import CleanupPlan, CleanupReport
    from ocrtrain.monitor.snapshot import MonitorSnapshot, ProcessView, RunView

NA = "N/A"


_MIN_WIDTH = {"PID": 7, "ROLE": 10, "AGE": 6, "CPU%": 5, "RSS": 7, "READ": 7, "WRITE": 7}


def fmt_bytes(value: Any) -> str:
    """1536 -> '1.5K'; None -> 'N/A'."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return NA
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return NA  # pragma: no cover


def fmt_age(value: Any) -> str:
    """Seconds -> '42s', '3m05s', '2h07m', '3d04h'."""
    try:
        s = int(float(value))
    except (TypeError, ValueError):
        return NA
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_pct(value: Any) -> str:
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return NA


def fmt_rank(p: ProcessView) -> str:
    """`global/local@node` for a rank of a job (what is known of it), blank otherwise."""
    if p.global_rank is None and p.local_rank is None:
        return ""
    node = f"@{p.node_rank}" if p.node_rank is not None else ""
    return f"{fmt(p.global_rank)}/{fmt(p.local_rank)}{node}"


def fmt(value: Any) -> str:
    return NA if value is None else str(value)


def _depths(run: RunView) -> dict[int, int]:
    pids = {p.pid: p for p in run.processes}
    out: dict[int, int] = {}
    for p in run.processes:
        depth, cur, seen = 0, p, {p.pid}
        while cur.ppid in pids and cur.ppid not in seen and depth < 32:
            seen.add(cur.ppid)
            cur = pids[cur.ppid]
            depth += 1
        out[p.pid] = depth
    return out


def _ordered(run: RunView) -> list[ProcessView]:
    """Processes in tree order (parents before their children)."""
    pids = {p.pid for p in run.processes}
    children: dict[int, list[ProcessView]] = {}
    roots: list[ProcessView] = []
    for p in run.processes:
        if p.ppid in pids and p.ppid != p.pid:
            children.setdefault(p.ppid, []).append(p)
        else:
            roots.append(p)
    out: list[ProcessView] = []
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        p = stack.pop()
        if p.pid in seen:
            continue
        seen.add(p.pid)
        out.append(p)
        stack.extend(reversed(children.get(p.pid, [])))
    out.extend(p for p in run.processes if p.pid not in seen)
    return out


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception:  # rendering never raises
        return NA


def snapshot_renderable(snap: MonitorSnapshot, width: int | None = None) -> RenderableType:
    """A Rich renderable of a snapshot: host line, then one table per run."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    h = snap.host
    gpus = "; ".join(
        f"GPU{fmt(g.index)} {fmt(g.name)} {fmt_bytes(g.mem_used)}/"
        f"{fmt_bytes(g.mem_total)} {fmt_pct(g.util)}%"
        for g in h.gpus
    )
    when = _safe(lambda: time.strftime("%H:%M:%S", time.localtime(snap.taken_at)))
    parts.append(
        Text(
            f"{when}  CPU {fmt_pct(h.cpu_percent)}%  MEM {fmt_bytes(h.mem_used)}/"
            f"{fmt_bytes(h.mem_total)}  GPU {gpus or NA}  runs {len(snap.runs)}  "
            f"orphans {snap.orphans}"
            + "".join(
                f"  {name} tx {fmt_bytes(n.sent)} rx {fmt_bytes(n.received)}"
                for name, n in h.nics.items()
            )
        )
    )
    if not snap.runs:
        parts.append(Text("no ocrtrain runs on this machine"))
    for run in snap.runs:
        flags = " ".join(f"[{f}]" for f in run.flags)
        title = (
            f"run {run.id}  {fmt(run.name)}  user {fmt(run.user)}  "
            f"state {fmt(run.state) if run.state else 'not in this journal'} {flags}"
        )
        table = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
        for col, justify in (
            ("PID", "left"),
            ("ROLE", "left"),
            ("RANK", "left"),
            ("STEP", "right"),
            ("S", "left"),
            ("AGE", "right"),
            ("CPU%", "right"),
            ("RSS", "right"),
            ("THR", "right"),
            ("READ", "right"),
            ("WRITE", "right"),
            ("GPU MEM", "right"),
            ("GPU%", "right"),
            ("NET TX", "right"),
            ("NET RX", "right"),
            ("FLAGS", "left"),
            ("COMMAND", "left"),
        ):
            # Only the command may be shortened to fit the terminal: the other columns keep
            # their full width, so a role or a pid is never cut.
            table.add_column(
                col,
                justify=justify,  # type: ignore[arg-type]
                no_wrap=True,
                overflow="ellipsis",
                min_width=None if col == "COMMAND" else _MIN_WIDTH.get(col, len(col)),
            )
        depths = _safe_depths(run)
        for p in _ordered_safe(run):
            indent = "  " * depths.get(p.pid, 0)
            table.add_row(
                f"{indent}{p.pid}",
                fmt(p.role),
                fmt_rank(p),
                fmt(p.step) if p.step is not None else "",
                fmt(p.state),
                fmt_age(p.age_s),
                fmt_pct(p.cpu_percent),
                fmt_bytes(p.rss_bytes),
                fmt(p.threads),
                fmt_bytes(p.io_read_bytes),
                fmt_bytes(p.io_write_bytes),
                fmt_bytes(p.gpu_mem_bytes),
                fmt_pct(p.gpu_util),
                fmt_bytes(p.net_sent_bytes),
                fmt_bytes(p.net_recv_bytes),
                ",".join(p.flags),
                fmt(p.cmdline),
            )
        parts.append(table)
    if snap.legacy is not None:
        table = Table(title="matched pre-ocrtrain processes (--match)", title_justify="left")
        for col in ("PID", "PPID", "USER", "S", "AGE", "RSS", "SCRIPT", "COMMAND"):
            table.add_column(col)
        for lp in snap.legacy:
            table.add_row(
                str(lp.pid),
                str(lp.ppid),
                fmt(lp.user),
                lp.state,
                fmt_age(lp.age_s),
                fmt_bytes(lp.rss_bytes),
                lp.script,
                lp.cmdline,
            )
        if not snap.legacy:
            parts.append(Text("no process matches --match"))
        else:
            parts.append(table)
    return Group(*parts)


def _safe_depths(run: RunView) -> dict[int, int]:
    try:
        return _depths(run)
    except Exception:
        return {}


def _ordered_safe(run: RunView) -> list[ProcessView]:
    try:
        return _ordered(run)
    except Exception:
        return list(run.processes)


def print_snapshot(snap: MonitorSnapshot, console: Console | None = None) -> None:
    """Print a snapshot once; into a pipe or file at full width (nothing is cut)."""
    import sys

    from rich.console import Console

    if console is None:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 1000)
    console.print(snapshot_renderable(snap))


def watch(collect: Callable[[MonitorSnapshot | None], MonitorSnapshot], interval: float) -> int:
    """Redraw snapshots in place every `interval` seconds until Ctrl-C (replaces `watch -n`).

    Returns:
        0 when interrupted.
    """
    import signal

    from rich.console import Console
    from rich.live import Live

    # Ctrl-C is the only way out: a shell starts background jobs with SIGINT ignored, and
    # Python then never raises KeyboardInterrupt, so install its handler explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console(highlight=False)
    snap = collect(None)
    try:
        with Live(snapshot_renderable(snap), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                snap = collect(snap)
                live.update(snapshot_renderable(snap), refresh=True)
    except KeyboardInterrupt:
        return 0


def plan_lines(plan: CleanupPlan, *, dry_run: bool) -> list[str]:
    """Human lines saying what a cleanup would do (or will do) and why."""
    verb = "would signal" if dry_run else "will signal"
    lines: list[str] = []
    for item in plan.items:
        run = item.run_id or "(no run)"
        lines.append(f"{verb} pid {item.pid} ({item.role}, run {run}): {item.reason}")
        lines.append(f"    {fmt(item.cmdline)}")
    for run_id in plan.stale_runs:
        lines.append(
            f"{'would mark' if dry_run else 'will mark'} run {run_id} lost: stale (journal says "
            "active, its supervisor and processes are gone)"
        )
    if plan.empty:
        lines.append("nothing to clean up")
    return lines


def report_lines(report: CleanupReport) -> list[str]:
    """Human lines saying what a cleanup did."""
    lines: list[str] = []
    for e in report.ended:
        lines.append(f"ended pid {e.pid} (run {e.run_id or '(no run)'}) by {e.signal}: {e.reason}")
    for e in report.skipped:
        lines.append(f"skipped pid {e.pid}: {e.reason}")
    for e in report.survived:
        lines.append(f"SURVIVED pid {e.pid} (run {e.run_id or '(no run)'}): {e.reason}")
    for run_id in report.stopped_runs:
        lines.append(f"stopped live run {run_id}")
    for run_id in report.marked_lost:
        lines.append(f"run {run_id} marked lost")
    for path in report.removed_files:
        lines.append(f"removed {path}, left by an ended run")
    if not lines:
        lines.append("nothing to clean up")
    return lines
