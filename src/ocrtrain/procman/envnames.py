"""Every environment variable ocrtrain reads or sets, named once.

The core tags each process of a run with `RUN_ID_ENV` (how membership finds it after any fork,
exec or `setsid`), and the other names configure where state, configs and cgroups live.
"""

from __future__ import annotations

HOME_ENV = "OCRTRAIN_HOME"  # the state folder (journal, run folders)
RUN_ID_ENV = "OCRTRAIN_RUN_ID"  # set on every process of a run: its run id
RUN_DIR_ENV = "OCRTRAIN_RUN_DIR"  # set on every process of a run: its run folder
SUPERVISOR_PID_ENV = "OCRTRAIN_SUPERVISOR_PID"  # set on a run's main child
WATCHDOG_ENV = "OCRTRAIN_WATCHDOG_FOR"  # set on a watchdog: the run it guards
NO_SUPERVISOR_ENV = "OCRTRAIN_NO_SUPERVISOR"  # "1": a training script does not re-exec
CGROUP_ROOT_ENV = "OCRTRAIN_CGROUP_ROOT"  # where run cgroups are created
NO_CGROUP_ENV = "OCRTRAIN_NO_CGROUP"  # "1": runs get no cgroup
CONFIG_DIR_ENV = "OCRTRAIN_CONFIG_DIR"  # the Hydra configs folder
TRAIN_SCRIPT_ENV = "OCRTRAIN_TRAIN_SCRIPT"  # the script the web UI launches
RANKS_OUTPUT_DIR_ENV = "OCRTRAIN_RANKS_OUTPUT_DIR"  # rank 0's output folder, for other ranks
UI_TOKEN_ENV = "OCRTRAIN_UI_TOKEN"  # the web UI's access token
