"""`train(cfg)`: build data, model, callbacks and trainer from a composed config, fit, test.

`main(argv)` composes `configs/train.yaml` with command-line overrides and returns the exit
code: 0, 2 for bad input (one `ERROR:` line, nothing written), 128+N when stopped by signal N.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrtrain.hydra_checks import folder_name_problem
from ocrtrain.procman import RANKS_OUTPUT_DIR_ENV as RANKS_OUTPUT_DIR
from ocrtrain.procman import RUN_DIR_ENV, UsageError, ranks_dir
from ocrtrain.train.errors import CheckpointError, ConfigError, NothingToTrain, RunFailed
from ocrtrain.train.run_folders import latest_checkpoint, point_latest

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    exit_code: int
    output_dir: Path
    ckpt_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)


def _resume_path(cfg: Any, experiment_dir: Path) -> Path | None:
    resume = cfg.get("resume")
    if resume in (None, "", "none", "null", False):
        return None
    if resume == "auto":
        last = latest_checkpoint(experiment_dir)
        if last is None:
            log.info("resume=auto: no checkpoint in %s yet, starting fresh", experiment_dir)
        return last
    path = Path(str(resume)).expanduser().resolve()
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint not found: {path}")
    return path


def _shared_output_dir(composed: Path) -> Path:
    """Rank 0's output folder in the ranks Lightning starts (each would compose its own
    `${now:}` time stamp): one run, one folder."""
    inherited = os.environ.get(RANKS_OUTPUT_DIR)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    return composed


SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning seeds too


def _check_run_settings(cfg: Any) -> None:
    """Top-level settings no builder checks: the seed's range, a named experiment (its folder
    holds the checkpoints), and a finite run for the one-cycle schedule, which spreads over
    the run's steps."""
    seed = cfg.get("seed")
    if seed is not None and not 0 <= int(seed) <= SEED_MAX:
        raise ConfigError(f"seed must be between 0 and {SEED_MAX}, not {seed}")
    if not str(cfg.get("experiment_name") or "").strip():
        raise ConfigError("experiment_name must not be empty (it names the checkpoint folder)")
    problem = folder_name_problem("experiment_name", cfg.experiment_name)
    if problem:
        raise ConfigError(problem)
    endless = cfg.trainer.get("max_epochs") == -1 and cfg.trainer.get("max_steps", -1) in (-1, None)
    if endless and cfg.model.get("scheduler") == "onecycle":
        raise ConfigError(
            "trainer.max_epochs=-1 trains without end, but model.scheduler=onecycle needs a "
            "finite run: set trainer.max_epochs or trainer.max_steps, or model.scheduler=constant"
        )


def _job_shape() -> Any:
    """The job an external launcher (torchrun, srun) started this rank in, if any."""
    from ocrtrain.dist.env import job_shape

    try:
        return job_shape()
    except ValueError as exc:
        raise ConfigError(f"cannot read the launcher's environment: {exc}") from exc


def _job_trainer_args(shape: Any, cfg: Any) -> dict[str, Any]:
    """The trainer's shape from the launcher's: no trainer.devices/num_nodes/strategy needed."""
    from datetime import timedelta

    from lightning.fabric.plugins.environments.slurm import SLURMEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    from ocrtrain.dist.env import Launcher
    from ocrtrain.dist.job import process_group_timeout

    # Lightning's own SLURM requeue stays off: slurm.requeue (GracefulSignals) owns SIGUSR1.
    cluster = SLURMEnvironment(auto_requeue=False) if shape.launcher is Launcher.SLURM else None
    timeout = process_group_timeout(shape, float(cfg.dist.timeout_s))
    strategy = DDPStrategy(cluster_environment=cluster, timeout=timedelta(seconds=timeout))
    return {"devices": shape.local_world_size, "num_nodes": shape.num_nodes, "strategy": strategy}


def _requeue_job(cfg: Any, shape: Any) -> str | None:
    """The SLURM job that SIGUSR1 requeues (slurm.requeue=true under srun), else None."""
    if not cfg.slurm.get("requeue"):
        return None
    from ocrtrain.dist.env import Launcher, slurm_job_id

    job_id = slurm_job_id(os.environ)
    if shape is None or shape.launcher is not Launcher.SLURM or not job_id:
        raise ConfigError("slurm.requeue=true needs a SLURM job: start training with srun")
    return job_id


def _missing_dirs(folders: Sequence[Path]) -> list[Path]:
    """The folders (and parents) of `folders` that do not exist yet, deepest first."""
    missing: list[Path] = []
    for folder in folders:
        for d in (folder, *folder.parents):
            if d.exists():
                break
            if d not in missing:
                missing.append(d)
    return sorted(missing, key=lambda d: len(d.parts), reverse=True)


def _check_same_optimizer(ckpt: dict[str, Any], hparams: Mapping[str, Any], path: Path) -> None:
    """The optimizer state restored from a checkpoint belongs to its optimizer and its
    learning-rate schedule: a one-cycle state under a constant rate would train on at the
    cycle's last (~0) rate, the reverse fails at the first step, and AdamW's state does not
    fit Muon's parameter groups. Checkpoints from before `model.optimizer` used AdamW."""
    saved_hp = ckpt.get("hyper_parameters", {})
    for key, before in (("scheduler", hparams["scheduler"]), ("optimizer", "adamw")):
        saved, now = saved_hp.get(key, before), hparams[key]
        if saved != now:
            raise CheckpointError(
                f"{path} was trained with model.{key}={saved}, this run says {now}: "
                f"resume with model.{key}={saved}, or start fresh"
            )


def write_artifacts(output_dir: Path, metrics: Path, ckpt_dir: Path) -> None:
    """Tell the supervisor's run folder where this run's outputs are (atomically)."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    from ocrtrain.train.checkpoint_io import atomic_write

    doc = {"output_dir": str(output_dir), "metrics": str(metrics), "checkpoints": str(ckpt_dir)}
    atomic_write(Path(run_dir) / "artifacts.json", json.dumps(doc, indent=2).encode())


def build(spec: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, with bad input reported as one `UsageError` line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **kwargs, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, UsageError):
            raise cause from None
        raise ConfigError(" ".join(str(exc).split())) from exc


def _use_bar(mode: str) -> bool:
    """A progress bar for a terminal that has a width (a 0-column pty would show nothing)."""
    if mode in ("bar", "plain"):
        return mode == "bar"
    if not sys.stdout.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns > 0
    except OSError:
        return False


@dataclass
class _Place:
    """Where a run writes and what it resumes: one answer for every rank of a job."""

    shape: Any  # the launcher's job shape (torchrun, srun), None for a plain run
    rank_zero: bool
    output_dir: Path
    ckpt_dir: Path
    experiment_dir: Path
    ckpt_path: Path | None  # the checkpoint to resume from


def _place_run(cfg: Any) -> _Place:
    """The run's folders and resume checkpoint; under torchrun or srun, rank 0's for all."""
    from lightning.pytorch.utilities import rank_zero_only

    shape = _job_shape()
    composed_dir = Path(cfg.paths.output_dir).resolve()
    output_dir = _shared_output_dir(composed_dir)
    rank_zero = getattr(rank_zero_only, "rank", 0) == 0
    ckpt_dir = Path(cfg.paths.ckpt_dir).resolve()
    if ckpt_dir.is_relative_to(composed_dir):  # the run's own, in rank 0's folder
        ckpt_dir = output_dir / ckpt_dir.relative_to(composed_dir)
    experiment_dir = Path(cfg.paths.experiment_dir).resolve()
    ckpt_path = None
    if shape is None or rank_zero:  # the other ranks take rank 0's decisions (job.agree)
        from ocrtrain.train.precision import resolve

        ckpt_path = _resume_path(cfg, experiment_dir)
        cfg.trainer.precision = resolve(str(cfg.trainer.precision))
    if shape is not None:  # ranks of torchrun or srun: one job, rank 0's decisions
        from ocrtrain.dist import job

        job.join(shape, str(cfg.trainer.accelerator), float(cfg.dist.timeout_s))
        output_dir, ckpt_dir, ckpt_path = job.agree(shape, cfg, output_dir, ckpt_dir, ckpt_path)
    return _Place(shape, rank_zero, output_dir, ckpt_dir, experiment_dir, ckpt_path)


def _check_resume(cfg: Any, model: Any, place: _Place) -> None:
    """The resume checkpoint fits this model, its optimizer and has something left to train."""
    from ocrtrain.train.checkpoint_format import check_compatible, read_checkpoint
    from ocrtrain.train.resume_check import training_left

    path = place.ckpt_path
    if path is None:
        return
    ckpt = read_checkpoint(path)
    check_compatible(ckpt, dict(model.hparams), path)
    _check_same_optimizer(ckpt, model.hparams, path)
    reached = training_left(ckpt, cfg)
    if reached is not None:
        raise NothingToTrain(
            f"{path} has already reached {reached}: nothing to train (raise that limit to train on)"
        )
    if place.rank_zero:
        log.warning("resuming from %s (step %s)", path, ckpt.get("global_step"))


def _build_callbacks(cfg: Any, place: _Place, bar: bool, metrics_path: Path) -> list[Any]:
    """The configured callbacks, a progress bar or plain lines, and a rank's progress report."""
    from lightning.pytorch.callbacks import TQDMProgressBar

    from ocrtrain.train.callbacks import JobProgress, PlainProgress

    callbacks: list[Any] = []
    for name, spec in cfg.callbacks.items():
        if not spec or "_target_" not in spec:
            continue
        cb = build(spec)
        if bar and isinstance(cb, PlainProgress):
            continue
        if name == "metrics":
            cb.path = metrics_path
        callbacks.append(cb)
    if bar:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    if place.shape is not None:
        from ocrtrain.dist import progress

        folder = ranks_dir()
        if folder is not None:  # a supervised rank: its agent and `ocrtrain ps` read this
            report = progress.ProgressFile(folder, place.shape, float(cfg.dist.timeout_s))
            callbacks.append(JobProgress(report))
            progress.record_in_journal(place.shape)
    return callbacks


def _make_folders(cfg: Any, place: _Place, metrics_path: Path, created: list[Path]) -> None:
    """Create the run's folders (rank 0), prove every rank sees them, then record the run:
    its config, where its outputs are, and the experiment's newest run."""
    from omegaconf import OmegaConf

    output_dir, ckpt_dir = place.output_dir, place.ckpt_dir
    if place.rank_zero:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the run's output folder under paths.outputs_root: {exc}"
            ) from exc
    if place.shape is not None:
        from ocrtrain.dist import job

        try:
            job.check_shared_folder(place.shape, ckpt_dir)
        except ConfigError:
            for folder in created:  # nothing half-written: the job never started
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    if place.rank_zero:
        OmegaConf.save(cfg, output_dir / "config.yaml")
        write_artifacts(output_dir, metrics_path, ckpt_dir)
        if output_dir.parent.parent == place.experiment_dir:
            point_latest(place.experiment_dir, output_dir)
        log.info("run output: %s", output_dir)
        # Ranks that Lightning starts for multi-device training inherit this environment.
        os.environ[RANKS_OUTPUT_DIR] = str(output_dir)


def _fit_and_test(
    cfg: Any, trainer: Any, model: Any, datamodule: Any, place: _Place, callbacks: list[Any]
) -> TrainResult:
    """Fit, test the best checkpoint, and turn a stop signal or a lost worker into a result."""
    from ocrtrain.train.callbacks import GracefulSignals, TrainingInterrupted, worker_lost

    signals = next((c for c in callbacks if isinstance(c, GracefulSignals)), None)
    result = TrainResult(0, place.output_dir, place.ckpt_dir)
    try:
        resume = str(place.ckpt_path) if place.ckpt_path else None
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        result.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.test_after_fit and "test" in datamodule.datasets:
            monitored = (c for c in callbacks if getattr(c, "monitor", None))
            best = next((c.best_model_path for c in monitored), "")
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            result.metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if signals is not None and signals.stop_signal is not None:
            raise TrainingInterrupted(signals.stop_signal)
    except RuntimeError as exc:
        if not worker_lost(exc):
            raise
        saved = signals.saved_after_failure if signals is not None else None
        where = (
            f"last.ckpt saved at step {saved}, resume=auto goes on from there"
            if saved is not None
            else f"resume=auto goes on from the last checkpoint in {place.ckpt_dir}"
        )
        raise RunFailed(f"{' '.join(str(exc).split())} ({where})") from exc
    except TrainingInterrupted as exc:
        if place.rank_zero:
            log.warning(
                "%s at step %d; last.ckpt saved in %s", exc, trainer.global_step, place.ckpt_dir
            )
        if exc.signum == signal.SIGUSR1 and place.rank_zero:
            log.warning("the requeued job goes on from there with resume=auto")
        result.exit_code = 128 + exc.signum
    return result


def train(cfg: Any) -> TrainResult:
    """Fit (and test) the model described by the resolved config `cfg`."""
    import lightning as L
    from omegaconf import OmegaConf

    from ocrtrain.train.callbacks import GracefulSignals
    from ocrtrain.train.known_warnings import quiet_known_warnings
    from ocrtrain.train.loggers import build_loggers

    quiet_known_warnings()
    place = _place_run(cfg)
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    # Build everything that validates user input before writing anything.
    _check_run_settings(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, loaders=OmegaConf.to_container(cfg.dataloaders))
    model = build(cfg.model)
    _check_resume(cfg, model, place)
    metrics_path = place.output_dir / "metrics.jsonl"
    bar = _use_bar(str(cfg.progress))
    callbacks = _build_callbacks(cfg, place, bar, metrics_path)
    # The trainer too validates input (strategy, accelerator): build it before writing.
    trainer = build(
        cfg.trainer,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=bar,
        default_root_dir=str(place.output_dir),
        **(_job_trainer_args(place.shape, cfg) if place.shape is not None else {}),
    )
    created = _missing_dirs([place.output_dir, place.ckpt_dir]) if place.rank_zero else []
    # Last of all: a logger may create its store (MLflow's mlruns/) as it is built.
    trainer.loggers = build_loggers(cfg.get("logger"), build)
    _make_folders(cfg, place, metrics_path, created)

    signals = next((c for c in callbacks if isinstance(c, GracefulSignals)), None)
    if signals is not None:
        signals.requeue_job = _requeue_job(cfg, place.shape)
        signals.install()
    try:
        return _fit_and_test(cfg, trainer, model, datamodule, place, callbacks)
    finally:
        if signals is not None:
            signals.restore()


def main(argv: Sequence[str] | None = None) -> int:
    """Compose `configs/train.yaml` with `argv` overrides and train; returns the exit code."""
    from ocrtrain.dist.agent import record_exit
    from ocrtrain.procman import register_stack_dump
    from ocrtrain.train.info import answer_without_training

    overrides = list(sys.argv[1:] if argv is None else argv)
    code = answer_without_training(overrides, "python -m ocrtrain.train")
    if code is not None:
        return code
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for name in ("lightning.pytorch", "lightning.fabric"):  # they print via their own handler
            logging.getLogger(name).propagate = False
    register_stack_dump()  # `ocrtrain stack`: this process's and its workers' stacks
    code = _train_main(overrides)
    record_exit(code)  # for torchrun's agent (ocrtrain.dist.agent)
    return code


def _train_main(overrides: Sequence[str]) -> int:
    from ocrtrain.train.config import compose

    try:
        cfg = compose(overrides)
        return train(cfg).exit_code
    except NothingToTrain as exc:
        print(exc, file=sys.stderr)
        return 0
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
