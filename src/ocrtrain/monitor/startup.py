"""The startup check every `ocrtrain` command and the web UI run first.

It closes runs whose supervisor and watchdog are gone as `lost` (the core's `reconcile`),
removes what ended runs left (empty cgroups, recorded temp folders: `sweep_leftovers`) and
reports orphaned processes with the one command that removes them. It costs one pass over
`/proc` (stat + environ) and a couple of journal queries: no cmdline, io or GPU reads, except
the cmdline of the parent of a run this journal does not know.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ocrtrain.monitor.snapshot import journal_records, orphan_pids
from ocrtrain.procman import ProcessTable, RunMembers, by_run, reconcile, sweep_leftovers

if TYPE_CHECKING:
    from ocrtrain.procman import Journal

log = logging.getLogger(__name__)


def live_runs(groups: dict[str, RunMembers]) -> list[str]:
    """The runs that still have a process (supervisor, watchdog or member)."""
    return [
        run_id
        for run_id, g in groups.items()
        if g.members or g.supervisor_alive or g.watchdog_alive
    ]


def startup_check(journal: Journal) -> list[str]:
    """Reconcile the journal with the process table and return hint lines for humans.

    Never raises for a problem it finds (that is what the hints are for); a journal that
    cannot be read is logged and yields no hints, so that a broken check never blocks a
    command.

    Returns:
        Lines such as "2 orphaned process(es) of run X; remove them with: ocrtrain cleanup
        --yes". Empty when all is well.
    """
    lines: list[str] = []
    try:
        for run in reconcile(journal):
            lines.append(f"run {run.id} ({run.name}) was marked lost: its supervisor is gone")
        table = ProcessTable.scan()
        groups = by_run(table, journal_records(journal, table))
        sweep_leftovers(journal, live_runs(groups))
    except Exception:  # a startup check must never break the command that runs it
        log.exception("startup check failed")
        return lines
    for run_id in sorted(groups):
        n = len(orphan_pids(groups[run_id], table))
        if n:
            lines.append(
                f"{n} orphaned process(es) of run {run_id}; remove them with: "
                "ocrtrain cleanup --yes"
            )
    return lines


def open_journal(check: bool = True) -> Journal:
    """The journal for a CLI command, after the startup check; hints go to stderr.

    Called only once the command's own arguments are valid, so that bad input never creates
    `$OCRTRAIN_HOME` or a journal.
    """
    import sys

    from ocrtrain.procman import Journal

    journal = Journal()
    if check:
        for line in startup_check(journal):
            print(f"HINT: {line}", file=sys.stderr)
    return journal
