"""What a run leaves besides processes, removed once none of its processes remain: its empty
cgroup folder and the temp folders its processes recorded (Python multiprocessing's
`/tmp/pymp-*`, which torch's DataLoader workers use and a killed process never removes).

A process records a temp folder it made with `record_tmpdir()`: one small file per process
under `$OCRTRAIN_HOME/leftovers/RUN_ID/`. Only recorded folders are ever removed, and only
when they are still what was recorded (a `pymp-*` folder directly in the temp folder, owned
by this user, no symlink): never another user's or another run's. The watchdog removes a
run's leftovers after its teardown; `ocrtrain cleanup` and the startup check sweep every run
of the journal that has ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ocrtrain.procman.cgroup import CgroupUnavailable, RunCgroup, parent_dir
from ocrtrain.procman.envnames import RUN_ID_ENV
from ocrtrain.procman.home import state_home
from ocrtrain.procman.journal import FINAL_STATES, Journal

log = logging.getLogger(__name__)

LEFTOVERS_DIR = "leftovers"
TMPDIR_PREFIX = "pymp-"
UNKNOWN_CGROUP_AGE_S = 60.0  # an empty cgroup of a run this journal does not know, this old


def _records(home: Path, run_id: str) -> Path:
    return home / LEFTOVERS_DIR / run_id


def record_tmpdir(path: str) -> None:
    """Record that this process of a run made the temp folder `path` (a no-op outside a run)."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id or os.sep in run_id:
        return
    folder = _records(state_home(), run_id)
    with contextlib.suppress(OSError):  # a record, never a reason to fail
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(os.getpid())).write_text(path)


def _removable(path: Path) -> bool:
    """A `pymp-*` folder directly in the temp folder, owned by this user, not a symlink."""
    if path.parent != Path(tempfile.gettempdir()) or not path.name.startswith(TMPDIR_PREFIX):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def remove_run_leftovers(home: Path, run_id: str, cgroup: str | None) -> list[Path]:
    """Remove what the (ended) run `run_id` left: recorded temp folders, its empty cgroup.
    Returns what was removed."""
    removed: list[Path] = []
    folder = _records(home, run_id)
    with contextlib.suppress(OSError):
        for record in list(folder.iterdir()):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                path = Path(record.read_text().strip())
                if _removable(path):
                    shutil.rmtree(path, ignore_errors=True)
                    if not path.exists():
                        removed.append(path)
            record.unlink(missing_ok=True)
        folder.rmdir()
    if cgroup and Path(cgroup).is_dir() and RunCgroup(Path(cgroup)).remove():
        removed.append(Path(cgroup))
    for path in removed:
        log.info("run %s: removed %s", run_id, path)
    return removed


def _old(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime >= UNKNOWN_CGROUP_AGE_S
    except OSError:
        return False


def sweep_leftovers(journal: Journal, live_runs: Iterable[str]) -> list[Path]:
    """Remove the leftovers of every run that has ended and has no live process (`live_runs`:
    the runs that still have one). Empty run cgroups of runs this journal does not know (other
    homes' ended runs) go too, once old enough to be no run's start-up. Costs two directory
    listings and a journal query per entry found."""
    live = set(live_runs)
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for folder in list((journal.home / LEFTOVERS_DIR).iterdir()):
            run = journal.get_run(folder.name)
            if folder.name not in live and (run is None or run.state in FINAL_STATES):
                removed += remove_run_leftovers(journal.home, folder.name, None)
    try:
        cgroups = [p for p in parent_dir().iterdir() if p.is_dir()]
    except (CgroupUnavailable, OSError):
        cgroups = []
    for path in cgroups:
        if path.name in live or path.name.startswith("probe-"):
            continue
        run = journal.get_run(path.name)
        ended = run.state in FINAL_STATES if run is not None else _old(path)
        if ended and path.stat().st_uid == os.getuid() and RunCgroup(path).remove():
            log.info("run %s: removed its empty cgroup %s", path.name, path)
            removed.append(path)
    return removed
