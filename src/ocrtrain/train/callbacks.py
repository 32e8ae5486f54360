"""Training callbacks: signal-driven stop and save, atomic checkpoints, a time budget, JSONL
metrics, and plain progress lines for logs (a progress bar is used when stdout is a terminal).

Signal handlers only set flags; the work (save, stop) happens at the next batch boundary.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from ocrtrain.train.checkpoint_io import AtomicCheckpointIO, remove_stale_temps
from ocrtrain.train.checkpoint_records import write_record
from ocrtrain.train.errors import ConfigError, OutputWriteError

log = logging.getLogger(__name__)

LAST = "last.ckpt"


class TrainingInterrupted(Exception):
    """Raised at a batch boundary after a stop signal; the run exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _child_exits_unheard() -> Iterator[None]:
    """Keep torch's SIGCHLD handler off for a while (main thread only).

    Once a worker is lost, that handler raises the loss again at every child exit; one in the
    middle of the save made after the loss cut it short (seen once, under heavy load). With
    the default disposition no handler runs; exited children are reaped later as before.
    """
    try:
        previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except ValueError:  # not the main thread: nothing to switch off
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


def worker_lost(exc: BaseException) -> bool:
    """Whether `exc` is torch's report of a DataLoader worker that died or was killed."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("DataLoader worker")


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose files (`last.ckpt`, `best.ckpt`) are written atomically."""

    def __init__(self, *args: Any, test_delay_s: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(*args, **kwargs)
        self.test_delay_s = test_delay_s

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # One IO for the whole trainer: the last and best callbacks share it (and the test knob).
        io = trainer.strategy.checkpoint_io
        if isinstance(io, AtomicCheckpointIO):
            io.test_delay_s = max(io.test_delay_s, self.test_delay_s)
        else:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO(self.test_delay_s)
        if self.dirpath:
            remove_stale_temps(self.dirpath)

    @property
    def last_path(self) -> Path:
        return Path(str(self.dirpath)) / LAST

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        write_record(filepath, trainer, self.monitor)

    def save_last_now(self, trainer: L.Trainer) -> None:
        """Save `last.ckpt` outside Lightning's schedule (a signal, the end of training)."""
        trainer.save_checkpoint(str(self.last_path))
        self._last_global_step_saved = trainer.global_step
        write_record(self.last_path, trainer, None)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run that stops between two saves (its time budget, `max_steps`) leaves its final
        weights in `last.ckpt` too, so `resume=auto` has nothing to redo."""
        super().on_train_end(trainer, pl_module)
        saved = getattr(self, "_last_global_step_saved", None)  # Lightning's own bookkeeping
        if self.save_last and self.dirpath and saved != trainer.global_step:
            self.save_last_now(trainer)


class GracefulSignals(Callback):
    """First SIGINT/SIGTERM/SIGHUP: finish the batch, save `last.ckpt`, stop (exit 128+N).
    A second one exits at once. SIGUSR1/SIGUSR2: save `last.ckpt` and go on.

    Installed before `fit` and again at `on_train_start`, after Lightning has put its own
    SIGTERM handler in place, so these semantics win.

    In a distributed run the ranks agree after every training batch (one small all-reduce):
    a signal that reached any rank (the supervisor signals the trainer, rank 0) stops or
    saves all of them at the same step, as a checkpoint save is collective.

    `requeue_job` (a SLURM job id, from `slurm.requeue=true`): after the save that SIGUSR1
    asks for, global rank 0 runs `scontrol requeue JOB` and every rank exits 128+SIGUSR1.
    Lightning's own SLURM requeue stays off, so one handler owns SIGUSR1.
    """

    STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    SAVE = (signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stop_signal: int | None = None
        self.save_requested = False
        self.saved_after_failure: int | None = None  # the step of a save made by on_exception
        self.requeue_job: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if not self.enabled:
            return
        for sig in (*self.STOP, *self.SAVE):
            prev = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, prev)

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum in self.SAVE:
            self.save_requested = True
            return
        if self.stop_signal is not None:
            os.write(2, b"\nsecond stop signal: exiting now\n")
            os._exit(128 + signum)
        self.stop_signal = signum
        if getattr(rank_zero_only, "rank", 0) == 0:  # every rank of a foreground group gets it
            os.write(2, b"\nstop requested: saving a checkpoint after this batch\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()

    def _save(self, trainer: L.Trainer) -> None:
        for ckpt in trainer.checkpoint_callbacks:
            if isinstance(ckpt, AtomicModelCheckpoint) and ckpt.save_last and ckpt.dirpath:
                ckpt.save_last_now(trainer)
                if trainer.is_global_zero:
                    log.warning("saved %s at step %d", ckpt.last_path, trainer.global_step)
                return

    def _requeued(self, trainer: L.Trainer) -> bool:
        """Rank 0 requeues the job; every rank learns whether it worked (if not, the run
        goes on: its allocation ends it later, with the checkpoint just saved)."""
        ok = True
        if trainer.is_global_zero:
            cmd = ["scontrol", "requeue", str(self.requeue_job)]
            try:
                done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
                ok = done.returncode == 0
                why = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                ok, why = False, str(exc)
            if ok:
                log.warning("requeued SLURM job %s: every rank exits", self.requeue_job)
            else:
                log.error("%s failed (%s): training goes on", " ".join(cmd), why)
        if trainer.world_size > 1:
            failed = torch.tensor([int(not ok)], device=trainer.strategy.root_device)
            ok = not trainer.strategy.reduce(failed, reduce_op="sum").item()
        return ok

    def _agreed(self, trainer: L.Trainer) -> tuple[int, bool]:
        """(stop signal or 0, save requested), the same on every rank."""
        stop, save = self.stop_signal or 0, self.save_requested
        if trainer.world_size > 1:
            flags = torch.tensor([stop, int(save)], device=trainer.strategy.root_device)
            stop, saved = trainer.strategy.reduce(flags, reduce_op="max").tolist()
            save = bool(saved)
        return int(stop), save

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        stop, save = self._agreed(trainer)
        if save and not stop:
            self.save_requested = False
            self._save(trainer)
            if self.requeue_job is not None and self._requeued(trainer):
                raise TrainingInterrupted(signal.SIGUSR1)
        if stop:
            self._save(trainer)
            raise TrainingInterrupted(stop)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # Mid-validation there is no batch of training to keep: the run resumes from the
        # previous `last.ckpt` (periodic or end of epoch) and redoes at most that much. Ranks
        # may score different numbers of batches, so distributed runs stop after validation.
        stopping = self.stop_signal is not None and not trainer.sanity_checking
        if stopping and trainer.world_size == 1:
            raise TrainingInterrupted(self.stop_signal or 0)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A DataLoader worker that died while training (killed, out of memory) leaves the
        model and optimizer as the last finished batch left them: save `last.ckpt`, so a
        resumed run loses nothing. One process only: in a distributed run a save is collective
        and the other ranks are not failing with this one."""
        if (
            worker_lost(exception)
            and trainer.training
            and not trainer.sanity_checking
            and trainer.world_size == 1
        ):
            with _child_exits_unheard():
                self._save(trainer)
            self.saved_after_failure = trainer.global_step

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # Testing after fit: training is over and saved, so a stop ends the run at once (a
        # distributed run finishes its test, then exits with the signal's code).
        if self.stop_signal is not None and trainer.world_size == 1:
            raise TrainingInterrupted(self.stop_signal)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and not trainer.sanity_checking:
            stop, _ = self._agreed(trainer)
            if stop:
                self._save(trainer)
                raise TrainingInterrupted(stop)


class TimeBudget(Callback):
    """Stop training after `seconds` of it (validation included), with the one-cycle
    learning rate (`schedule.TimedOneCycleLR`) run to its end by then.

    `make train` promises a model in minutes on machines of different speeds: the run trains
    as many steps as its budget buys, up to `trainer.max_epochs`. The time spent is part of
    every checkpoint, so a resumed run goes on with the rest of the budget. In a distributed
    run rank 0's clock is everyone's (one small all-reduce a step): the ranks must step the
    same learning rate and stop at the same step. `seconds: null` leaves the run to
    `trainer.max_epochs` / `max_steps` alone (reproducible step for step).
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and not seconds > 0:
            raise ConfigError(f"callbacks.time_budget.seconds must be above 0, not {seconds}")
        self.seconds = seconds
        self._spent_before = 0.0  # seconds spent by the runs this one resumes
        self._start: float | None = None
        self._fraction = 0.0  # of the budget, as of the current batch (the same on all ranks)
        self.stopped_at: int | None = None  # the global step the budget ended training at

    @property
    def enabled(self) -> bool:
        return self.seconds is not None

    def spent(self) -> float:
        """Seconds of training so far, over this run and those it resumes."""
        running = time.monotonic() - self._start if self._start is not None else 0.0
        return self._spent_before + running

    def fraction(self) -> float:
        """The share of the budget spent as of the current batch (0 when disabled)."""
        return self._fraction

    def remaining(self) -> float | None:
        """Seconds left of the budget (None when disabled)."""
        return None if self.seconds is None else max(self.seconds - self.spent(), 0.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        if self.seconds is not None and trainer.is_global_zero:
            log.info(
                "time budget: %s of training (callbacks.time_budget.seconds=%g), "
                "at most %s epochs; %s spent before this run",
                _fmt_duration(self.seconds),
                self.seconds,
                trainer.max_epochs,
                _fmt_duration(self._spent_before),
            )

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seconds is None:
            return
        spent = self.spent()
        if trainer.world_size > 1:
            mine = torch.tensor(
                [spent if trainer.is_global_zero else 0.0],
                dtype=torch.float64,
                device=trainer.strategy.root_device,
            )
            spent = float(trainer.strategy.reduce(mine, reduce_op="max"))
        self._fraction = spent / self.seconds

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seconds is not None and self._fraction >= 1.0 and self.stopped_at is None:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
            # Lightning validates a run that stops early only in an epoch it would validate
            # anyway: the end of the learning-rate cycle is always scored (and best.ckpt
            # considered), whatever `check_val_every_n_epoch` says.
            if (trainer.check_val_every_n_epoch or 1) > 1:
                trainer.check_val_every_n_epoch = 1
            if trainer.is_global_zero:
                log.info(
                    "time budget of %s spent: training ends at step %d (epoch %d); "
                    "callbacks.time_budget.seconds=null trainer.max_steps=%d repeats this "
                    "many steps on any machine",
                    _fmt_duration(self.seconds),
                    trainer.global_step,
                    trainer.current_epoch + 1,
                    trainer.global_step,
                )

    def state_dict(self) -> dict[str, Any]:
        return {"spent_s": self.spent()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._spent_before = float(state_dict.get("spent_s", 0.0))
        if self.seconds is not None:
            self._fraction = self._spent_before / self.seconds


class MetricsJsonl(Callback):
    """Appends one JSON object per logged train step and per validation/test epoch.

    Validation and test records are written at `on_validation_end` / `on_test_end`: the
    epoch-end hooks of callbacks run before the module's, whose CER is then not logged yet.
    """

    def __init__(self, path: str, every_n_steps: int = 10) -> None:
        self.path = Path(path)
        self.every_n_steps = max(1, every_n_steps)
        self._t0 = time.monotonic()
        self._lines = 0

    @rank_zero_only
    def _write(self, record: dict[str, Any]) -> None:
        """Append one whole line: a write that fails (a full disk) is cut back off the file,
        so readers never meet a torn record, and the run stops with `OutputWriteError`."""
        line = (json.dumps(record) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputWriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise OutputWriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

    @staticmethod
    def _scalars(trainer: L.Trainer, prefix: str) -> dict[str, float]:
        return {
            k: round(float(v), 6)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(prefix)
        }

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()
        self._lines = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *a: Any
    ) -> None:
        self._lines += len(batch["texts"])
        if trainer.global_step % self.every_n_steps:
            return
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self._write(
            {
                "time": time.time(),
                "split": "train",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **self._scalars(trainer, "train/"),
                "lr": lr,
                "lines_per_s": round(self._lines / elapsed, 2),
            }
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._write(
            {
                "time": time.time(),
                "split": "val",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **self._scalars(trainer, "val/"),
            }
        )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(
            {
                "time": time.time(),
                "split": "test",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                **self._scalars(trainer, "test/"),
            }
        )


def time_budget(trainer: L.Trainer) -> TimeBudget | None:
    """The run's enabled `TimeBudget`, if it has one."""
    return next(
        (c for c in trainer.callbacks if isinstance(c, TimeBudget) and c.enabled),  # type: ignore[attr-defined]
        None,
    )


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class PlainProgress(Callback):
    """Periodic one-line progress reports, for logs and pipes (no carriage returns)."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._start = time.monotonic()
        self._last = 0.0
        self._step0 = 0
        self._reported = -1  # the global step of the last report

    @staticmethod
    @rank_zero_only
    def _emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._step0 = trainer.global_step
        self._reported = -1

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if time.monotonic() - self._last >= self.interval_s:
            self._report(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Every epoch reports at least once, however fast it was."""
        if trainer.global_step != self._reported:
            self._report(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        now = time.monotonic()
        self._last = now
        self._reported = trainer.global_step
        total = int(trainer.estimated_stepping_batches)
        done = trainer.global_step
        rate = (done - self._step0) / max(now - self._start, 1e-9)
        eta = (total - done) / rate if rate > 0 else 0.0
        epochs, of = str(trainer.max_epochs), str(total)
        budget = time_budget(trainer)
        left = budget.remaining() if budget is not None else None
        if left is not None and left < eta:
            # The budget ends the run first: the totals are where it will end at this rate.
            eta = left
            ends = done + int(rate * left)
            per_epoch = max(int(trainer.num_training_batches), 1)
            epochs, of = f"~{-(-ends // per_epoch)}", f"~{ends}"
        loss = trainer.callback_metrics.get("train/loss")
        loss_s = f" loss {float(loss):.4f}" if loss is not None else ""
        self._emit(
            f"train epoch {trainer.current_epoch + 1}/{epochs} step {done}/{of}"
            f"{loss_s} {rate:.2f} steps/s eta {_fmt_duration(eta)}"
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        if "val/cer" in m:
            self._emit(
                f"val   epoch {trainer.current_epoch + 1} step {trainer.global_step}"
                f" cer {float(m['val/cer']):.4f} line_acc {float(m['val/line_acc']):.4f}"
            )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        if "test/cer" in m:
            self._emit(
                f"test  cer {float(m['test/cer']):.4f} line_acc {float(m['test/line_acc']):.4f}"
            )


class JobProgress(Callback):
    """A rank of a torchrun/srun job reports where it is after every batch (training,
    validation, test): its agent tells a stalled rank by the time it last got here, and
    `ocrtrain ps` shows the step (`ocrtrain.dist.progress`)."""

    def __init__(self, report: Any) -> None:
        self.report = report  # an ocrtrain.dist.progress.ProgressFile

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.report.progress(trainer.global_step, trained=True)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.report.progress(trainer.global_step, trained=False)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.report.progress(trainer.global_step, trained=False)
