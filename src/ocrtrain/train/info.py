"""`--help` and `--cfg job` of the training entry points: answered before the supervisor starts.

Hydra users expect `python runners/train.py --help` to list the config groups and
`--cfg job` to print the composed config without training. Neither is a run, so both are
answered here, unsupervised, and nothing is journaled or written. Any other `-option` is a
usage error naming it (Hydra's own parser would report a lexer error instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ocrtrain.train.errors import ConfigError

CFG_FLAGS = ("--cfg", "-c")
CFG_KINDS = ("job", "all")


def help_text(prog: str) -> str:
    """Usage, override syntax and the options of every config group."""
    from ocrtrain.train.config import GROUPS, config_dir

    root = config_dir()
    groups = []
    for group in GROUPS:
        options = sorted(p.stem for p in (root / group).glob("*.yaml"))
        if options:
            groups.append(f"  {group:<12} {', '.join(options)}")
    return "\n".join(
        [
            f"usage: {prog} [--cfg job] [key=value ...]",
            "",
            "Train the receipt-line recognizer under the supervisor (configs/train.yaml).",
            "",
            "Overrides (Hydra syntax):",
            "  group=option            choose a config group option, e.g. debug=smoke",
            "  key=value               set a value, e.g. trainer.max_epochs=20",
            "  +key=value              add a key the config does not have",
            "  resume=auto             continue from the experiment's last.ckpt",
            "",
            "Multi-node jobs (the same command on every node; docs/distributed.md):",
            "  dist.nnodes=N           nodes of the job (torchrun --nnodes)",
            "  dist.nproc_per_node=P   ranks on each node (torchrun --nproc-per-node)",
            "  dist.rdzv_endpoint=HOST:PORT  node 0's rendezvous address, reachable from all",
            "  dist.timeout_s=120      a rank stalled this long in a collective ends the job",
            "  slurm.requeue=true      under srun: SIGUSR1 saves, requeues the job and exits",
            "",
            "Config groups:",
            *groups,
            "",
            "Options:",
            "  -h, --help              this text",
            "  -c, --cfg job           print the composed config (with the overrides) and exit",
            "",
            f"Configs: {root} (OCRTRAIN_CONFIG_DIR to use others). Guide: docs/training.md",
        ]
    )


def answer_without_training(argv: Sequence[str], prog: str) -> int | None:
    """The exit code when `argv` asks for help or the config (printed here), else None.

    Raises nothing: a bad option or config is one `ERROR:` line and exit 2.
    """
    args = [a for a in argv if a != "--"]
    try:
        if any(a in ("-h", "--help") for a in args):
            _print(help_text(prog) + "\n")
            return 0
        cfg_at = next((i for i, a in enumerate(args) if a in CFG_FLAGS), None)
        if cfg_at is not None:
            kind = args[cfg_at + 1] if cfg_at + 1 < len(args) else ""
            if kind not in CFG_KINDS:
                raise ConfigError(f"{args[cfg_at]} takes one of {', '.join(CFG_KINDS)}")
            overrides = args[:cfg_at] + args[cfg_at + 2 :]
            _refuse_options(overrides)
            from omegaconf import OmegaConf

            from ocrtrain.train.config import compose

            _print(OmegaConf.to_yaml(compose(overrides)))
            return 0
        _refuse_options(args)
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return None


def _print(text: str) -> None:
    """Print `text`; a reader that left early (`| head`) wanted no more, which is no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush too


def _refuse_options(args: Sequence[str]) -> None:
    for arg in args:
        if arg in ("-m", "--multirun"):
            raise ConfigError(f"{arg}: multirun sweeps are not supported; start one run each")
        if arg.startswith("-") and "=" not in arg:
            raise ConfigError(f"unknown option {arg}; overrides are key=value (see --help)")
