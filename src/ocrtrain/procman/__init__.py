"""Process-management core: supervisor, signals, process membership and the run journal.

This package is the core's one public face: the monitor, the web UI and the training code
import from `ocrtrain.procman` only, never from its submodules (a ruff `banned-api` rule in
their folders enforces it). Names load on first use, so that `ocrtrain ps` does not pay for
the supervisor it never starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocrtrain.procman.api import RunHandle, request_stop, run_foreground, run_processes, start
    from ocrtrain.procman.envnames import (
        CONFIG_DIR_ENV,
        HOME_ENV,
        NO_SUPERVISOR_ENV,
        RANKS_OUTPUT_DIR_ENV,
        RUN_DIR_ENV,
        RUN_ID_ENV,
        TRAIN_SCRIPT_ENV,
        UI_TOKEN_ENV,
        WATCHDOG_ENV,
    )
    from ocrtrain.procman.errors import (
        HomeError,
        OcrtrainError,
        RunNotFound,
        SpawnError,
        UsageError,
    )
    from ocrtrain.procman.handoff import current_run_id, ensure_supervised
    from ocrtrain.procman.home import ensure_home
    from ocrtrain.procman.jobranks import launcher_rank, launcher_vars, run_ranks
    from ocrtrain.procman.journal import (
        ACTIVE_STATES,
        FINAL_STATES,
        EventKind,
        EventRecord,
        Journal,
        RankRecord,
        RankSample,
        RunRecord,
        RunState,
        SampleRecord,
    )
    from ocrtrain.procman.leftovers import record_tmpdir, sweep_leftovers
    from ocrtrain.procman.lifeline import set_parent_death_signal
    from ocrtrain.procman.liveness import reconcile, supervisor_alive, watchdog_alive
    from ocrtrain.procman.membership import (
        FoundBy,
        Member,
        ProcessTable,
        Role,
        RunMembers,
        RunScope,
        by_run,
        members,
        run_scope,
    )
    from ocrtrain.procman.netbytes import NetBytes, NicBytes, nic_bytes, process_bytes
    from ocrtrain.procman.outcomes import Outcome, ProcessOutcome
    from ocrtrain.procman.procfs import (
        CLOCK_TICKS,
        PROC,
        ProcStat,
        Tagged,
        boot_time,
        env_tag,
        is_alive,
        read_cmdline,
        read_environ,
        read_stat,
        read_uid,
        start_epoch,
    )
    from ocrtrain.procman.rankreports import RankReport, ranks_dir, read_reports
    from ocrtrain.procman.spec import DEFAULT_GRACE_S, RunSpec, parse_seconds, parse_size
    from ocrtrain.procman.stacks import StackDump, catches, collect_stacks, register_stack_dump
    from ocrtrain.procman.teardown import KILL_WAIT_S, Teardown, TeardownResult
    from ocrtrain.procman.tojson import HIDDEN, to_json

_EXPORTS: dict[str, tuple[str, ...]] = {
    "api": ("RunHandle", "request_stop", "run_foreground", "run_processes", "start"),
    "envnames": (
        "CONFIG_DIR_ENV",
        "HOME_ENV",
        "NO_SUPERVISOR_ENV",
        "RANKS_OUTPUT_DIR_ENV",
        "RUN_DIR_ENV",
        "RUN_ID_ENV",
        "TRAIN_SCRIPT_ENV",
        "UI_TOKEN_ENV",
        "WATCHDOG_ENV",
    ),
    "errors": ("HomeError", "OcrtrainError", "RunNotFound", "SpawnError", "UsageError"),
    "handoff": ("current_run_id", "ensure_supervised"),
    "home": ("ensure_home",),
    "jobranks": ("launcher_rank", "launcher_vars", "run_ranks"),
    "journal": (
        "ACTIVE_STATES",
        "FINAL_STATES",
        "EventKind",
        "EventRecord",
        "Journal",
        "RankRecord",
        "RankSample",
        "RunRecord",
        "RunState",
        "SampleRecord",
    ),
    "leftovers": ("record_tmpdir", "sweep_leftovers"),
    "lifeline": ("set_parent_death_signal",),
    "outcomes": ("Outcome", "ProcessOutcome"),
    "tojson": ("HIDDEN", "to_json"),
    "membership": (
        "FoundBy",
        "Member",
        "ProcessTable",
        "Role",
        "RunMembers",
        "RunScope",
        "by_run",
        "members",
        "run_scope",
    ),
    "procfs": (
        "CLOCK_TICKS",
        "PROC",
        "ProcStat",
        "Tagged",
        "boot_time",
        "env_tag",
        "is_alive",
        "read_cmdline",
        "read_environ",
        "read_stat",
        "read_uid",
        "start_epoch",
    ),
    "liveness": ("reconcile", "supervisor_alive", "watchdog_alive"),
    "netbytes": ("NetBytes", "NicBytes", "nic_bytes", "process_bytes"),
    "rankreports": ("RankReport", "ranks_dir", "read_reports"),
    "spec": ("DEFAULT_GRACE_S", "RunSpec", "parse_seconds", "parse_size"),
    "stacks": ("StackDump", "catches", "collect_stacks", "register_stack_dump"),
    "teardown": ("KILL_WAIT_S", "Teardown", "TeardownResult"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "ACTIVE_STATES",
    "CLOCK_TICKS",
    "CONFIG_DIR_ENV",
    "DEFAULT_GRACE_S",
    "FINAL_STATES",
    "HIDDEN",
    "HOME_ENV",
    "KILL_WAIT_S",
    "NO_SUPERVISOR_ENV",
    "PROC",
    "RANKS_OUTPUT_DIR_ENV",
    "RUN_DIR_ENV",
    "RUN_ID_ENV",
    "TRAIN_SCRIPT_ENV",
    "UI_TOKEN_ENV",
    "WATCHDOG_ENV",
    "EventKind",
    "EventRecord",
    "FoundBy",
    "HomeError",
    "Journal",
    "Member",
    "NetBytes",
    "NicBytes",
    "OcrtrainError",
    "Outcome",
    "ProcStat",
    "ProcessOutcome",
    "ProcessTable",
    "RankRecord",
    "RankReport",
    "RankSample",
    "Role",
    "RunHandle",
    "RunMembers",
    "RunNotFound",
    "RunRecord",
    "RunScope",
    "RunSpec",
    "RunState",
    "SampleRecord",
    "SpawnError",
    "StackDump",
    "Tagged",
    "Teardown",
    "TeardownResult",
    "UsageError",
    "boot_time",
    "by_run",
    "catches",
    "collect_stacks",
    "current_run_id",
    "ensure_home",
    "ensure_supervised",
    "env_tag",
    "is_alive",
    "launcher_rank",
    "launcher_vars",
    "members",
    "nic_bytes",
    "parse_seconds",
    "parse_size",
    "process_bytes",
    "ranks_dir",
    "read_cmdline",
    "read_environ",
    "read_reports",
    "read_stat",
    "read_uid",
    "reconcile",
    "record_tmpdir",
    "register_stack_dump",
    "request_stop",
    "run_foreground",
    "run_processes",
    "run_ranks",
    "run_scope",
    "set_parent_death_signal",
    "start",
    "start_epoch",
    "supervisor_alive",
    "sweep_leftovers",
    "to_json",
    "watchdog_alive",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all

    def __getattr__(name: str) -> Any:
        module = _HOME.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
