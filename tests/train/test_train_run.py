"""Supervised training runs: smoke, Ctrl+C then resume, SIGKILL during a save, SIGUSR1, bad input.

Each test starts `runners/train.py` (which hands itself to `ocrtrain run`) and asserts that no
process of the run is left afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import torch

from helpers import REPO, wait_until
from ocrtrain.train.config import compose
from train.conftest import SMOKE, descendants, last_metric_step, trainer_pid

pytestmark = pytest.mark.slow

EPOCHS, BATCHES = 3, 6
RUN = [*SMOKE, f"trainer.max_epochs={EPOCHS}", f"data.train.batches_per_epoch={BATCHES}"]


def _global_step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def _ckpt_dir(outputs: Path, experiment: str) -> Path:
    """The checkpoints of the experiment's newest run (`latest` links to it)."""
    return outputs / experiment / "latest" / "checkpoints"


def test_smoke_training_under_the_supervisor(start_train, ocrtrain_home: Path, tmp_path: Path):
    p = start_train(RUN)
    trainer_pid(p)
    rc, out = p.wait(timeout=180)
    assert rc == 0, out
    p.assert_no_survivors()
    art = p.artifacts(ocrtrain_home)
    assert art is not None, "the trainer writes artifacts.json into its run folder"
    ckpts = Path(art["checkpoints"])
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "best.ckpt").is_file()
    assert _global_step(ckpts / "last.ckpt") == EPOCHS * BATCHES
    records = [json.loads(x) for x in Path(art["metrics"]).read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val", "test"}
    # One validation record per epoch and the test record, each with its own epoch's scores.
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [BATCHES * (e + 1) for e in range(EPOCHS)]
    assert all("val/cer" in r and "val/line_acc" in r for r in val), val
    test = [r for r in records if r["split"] == "test"]
    assert len(test) == 1 and "test/cer" in test[0] and "test/line_acc" in test[0], test
    assert "train epoch" in out and "\r" not in out  # plain progress lines when not a TTY
    assert f"val   epoch 1 step {BATCHES} cer" in out and "test  cer" in out

    # Use the model: predict prints one line per image in order; eval prints CER and accuracy.
    data = tmp_path / "lines"
    env = {**os.environ}
    cli = [sys.executable, "-m", "ocrtrain"]
    subprocess.run([*cli, "data", "synth", "--out", str(data), "--n", "5"], check=True, env=env)
    images = [str(data / "images" / f"{i:06d}.png") for i in (3, 0, 4)]
    pred = subprocess.run(
        [*cli, "predict", "--ckpt", str(ckpts / "last.ckpt"), *images],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert [line.split("\t")[0] for line in pred.stdout.splitlines()] == images
    ev = subprocess.run(
        [*cli, "eval", "--ckpt", str(ckpts / "best.ckpt"), "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(ev.stdout)
    assert result["lines"] == 5 and result["cer"] >= 0.0


def test_sigint_saves_and_resume_auto_reaches_the_same_step(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [*RUN, "experiment_name=resume", "callbacks.checkpoint.every_n_train_steps=1000"]
    p = start_train(run, outputs)
    trainer_pid(p)
    metrics = lambda: next(outputs.glob("resume/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(
        lambda: metrics() and 2 <= last_metric_step(metrics()) < BATCHES,
        timeout=60,
        interval=0.02,
        what="training to start",
    )
    p.proc.send_signal(signal.SIGINT)
    rc, out = p.wait(timeout=30)
    assert rc == 130, out
    p.assert_no_survivors()
    last = _ckpt_dir(outputs, "resume") / "last.ckpt"
    interrupted_at = _global_step(last)
    assert 0 < interrupted_at < EPOCHS * BATCHES, out

    q = start_train([*run, "resume=auto"], outputs)
    rc, out = q.wait(timeout=180)
    assert rc == 0, out
    q.assert_no_survivors()
    assert "resuming from" in out
    assert _global_step(last) == EPOCHS * BATCHES  # as the uninterrupted smoke run
    # Each run kept its own checkpoints: the interrupted run's are still there, untouched.
    first, second = sorted((outputs / "resume" / "runs").iterdir())
    assert f"resuming from {first / 'checkpoints' / 'last.ckpt'}" in out
    assert _global_step(first / "checkpoints" / "last.ckpt") == interrupted_at
    assert (second / "checkpoints" / "best.ckpt").is_file()
    assert last.resolve() == (second / "checkpoints" / "last.ckpt").resolve()

    # Training on for more epochs than the checkpoint's run: its one-cycle schedule is
    # refitted to the new length instead of stepping past its end.
    r = start_train([*run, "resume=auto", f"trainer.max_epochs={EPOCHS + 1}"], outputs)
    rc, out = r.wait(timeout=180)
    assert rc == 0, out
    r.assert_no_survivors()
    assert "one-cycle learning rate refitted" in out
    assert _global_step(last) == (EPOCHS + 1) * BATCHES

    # Past trainer.max_epochs there is nothing to train: one line, exit 0, no new run folder.
    runs_before = sorted((outputs / "resume" / "runs").iterdir())
    r = start_train([*run, "resume=auto", f"trainer.max_epochs={EPOCHS + 1}"], outputs)
    rc, out = r.wait(timeout=120)
    assert rc == 0, out
    assert f"has already reached trainer.max_epochs={EPOCHS + 1}" in out
    assert "Traceback" not in out and "nothing to train" in out
    assert sorted((outputs / "resume" / "runs").iterdir()) == runs_before

    # Its optimizer state belongs to the one-cycle schedule: another schedule is refused.
    q = start_train([*run, "resume=auto", "model.scheduler=constant"], outputs)
    rc, out = q.wait(timeout=120)
    assert rc == 2 and "was trained with model.scheduler=onecycle" in out, out
    # and to its optimizer: Muon's parameter groups do not take AdamW's state, nor the reverse.
    other = "muon" if compose(["debug=smoke"]).model.optimizer == "adamw" else "adamw"
    q = start_train([*run, "resume=auto", f"model.optimizer={other}"], outputs)
    rc, out = q.wait(timeout=120)
    assert rc == 2 and "was trained with model.optimizer=" in out, out


def test_sigkill_during_a_checkpoint_save_leaves_a_loadable_last(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [*RUN, "experiment_name=kill", "callbacks.checkpoint.test_delay_s=2.0"]
    p = start_train(run, outputs)
    trainer = trainer_pid(p)
    ckpts = _ckpt_dir(outputs, "kill")
    wait_until(lambda: (ckpts / "last.ckpt").is_file(), timeout=120, what="a first last.ckpt")
    wait_until(lambda: list(ckpts.glob("*.tmp-*")), timeout=120, what="a save in progress")
    p.track()
    os.kill(trainer, signal.SIGKILL)
    rc, out = p.wait(timeout=30)
    assert rc == 128 + signal.SIGKILL, out
    p.assert_no_survivors()
    ckpt = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] >= 1 and "state_dict" in ckpt


def test_a_second_sigterm_stops_at_once_even_mid_save(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [
        *RUN,
        "experiment_name=twice",
        "callbacks.checkpoint.every_n_train_steps=1000",
        "callbacks.checkpoint.test_delay_s=30",
    ]
    p = start_train(run, outputs)
    trainer = trainer_pid(p)
    ckpts = _ckpt_dir(outputs, "twice")
    metrics = lambda: next(outputs.glob("twice/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(lambda: metrics() and last_metric_step(metrics()) >= 2, timeout=120)
    os.kill(trainer, signal.SIGTERM)  # first: finish the batch, start saving (a 30 s save)
    wait_until(lambda: list(ckpts.glob("last.ckpt.tmp-*")), timeout=60, what="the save")
    t0 = time.monotonic()
    os.kill(trainer, signal.SIGTERM)  # second: exit at once
    rc, out = p.wait(timeout=60)
    assert time.monotonic() - t0 < 10, out
    assert rc == 143, out
    p.assert_no_survivors()
    assert not (ckpts / "last.ckpt").exists()  # the torn save never became last.ckpt


def test_sigterm_while_testing_after_fit_stops_the_test(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    # a test split that takes far longer to score than the stop may take
    run = [*SMOKE, "experiment_name=testing", "trainer.max_epochs=1", "data.test.size=50000"]
    p = start_train(run, outputs)
    p.track()
    metrics = lambda: next(outputs.glob("testing/runs/*/metrics.jsonl"), None)  # noqa: E731

    def records() -> list[dict[str, object]]:
        path = metrics()
        text = path.read_text() if path else ""
        return [json.loads(x) for x in text.splitlines() if x.endswith("}")]

    wait_until(lambda: any(r["split"] == "val" for r in records()), timeout=120, what="fit")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)  # to the supervisor, which forwards it to the trainer
    rc, out = p.wait(timeout=60)
    assert rc == 143, out
    assert time.monotonic() - t0 < 10, out
    p.assert_no_survivors()
    assert not any(r["split"] == "test" for r in records()), out
    assert (_ckpt_dir(outputs, "testing") / "last.ckpt").is_file()


def test_a_killed_worker_saves_last_ckpt_and_resume_goes_on(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [
        *RUN,
        "experiment_name=workerloss",
        "trainer.max_epochs=1000",
        "trainer.limit_val_batches=0",  # always training: the worker dies mid-fit, not mid-val
        "callbacks.checkpoint.every_n_train_steps=1000",
    ]
    p = start_train(run, outputs)
    trainer = trainer_pid(p)
    metrics = lambda: next(outputs.glob("workerloss/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(lambda: metrics() and last_metric_step(metrics()) >= 2, timeout=120)
    p.track()
    worker = psutil.Process(trainer).children()[0]  # a DataLoader worker (out of memory, say)
    worker.kill()
    rc, out = p.wait(timeout=60)
    assert rc == 1, out
    errors = _errors(out)
    # torch names the worker in one of two ways, depending on which of its checks saw the
    # loss first: "(pid N) is killed by signal" or "(pid(s) N) exited unexpectedly".
    named = re.search(
        rf"DataLoader worker \(pid(\(s\))? {worker.pid}\)", errors[0] if errors else ""
    )
    assert len(errors) == 1 and named, out
    assert "last.ckpt saved at step" in errors[0] and "Traceback" not in out
    p.assert_no_survivors()
    saved = _global_step(_ckpt_dir(outputs, "workerloss") / "last.ckpt")
    assert f"saved at step {saved}," in errors[0]

    epochs = saved // BATCHES + 2
    q = start_train([*run, "resume=auto", f"trainer.max_epochs={epochs}"], outputs)
    rc, out = q.wait(timeout=180)
    assert rc == 0, out
    q.assert_no_survivors()
    assert _global_step(_ckpt_dir(outputs, "workerloss") / "last.ckpt") == epochs * BATCHES


def test_sigusr1_saves_a_checkpoint_and_training_goes_on(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [
        *SMOKE,
        "experiment_name=usr1",
        "trainer.max_epochs=1",
        "data.train.batches_per_epoch=40",
        "callbacks.checkpoint.every_n_train_steps=1000",
    ]
    p = start_train(run, outputs)
    trainer = trainer_pid(p)
    last = _ckpt_dir(outputs, "usr1") / "last.ckpt"
    metrics = lambda: next(outputs.glob("usr1/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(lambda: metrics() and last_metric_step(metrics()) >= 2, timeout=120)
    os.kill(trainer, signal.SIGUSR1)
    wait_until(last.is_file, timeout=30, what="the SIGUSR1 checkpoint")
    saved_at = _global_step(last)
    rc, out = p.wait(timeout=180)
    assert rc == 0, out
    p.assert_no_survivors()
    assert 2 <= saved_at < 40 and _global_step(last) == 40


def test_a_time_budget_ends_the_run_and_its_learning_rate_cycle(start_train, tmp_path: Path):
    outputs = tmp_path / "outputs"
    run = [*RUN, "experiment_name=budget", "trainer.max_epochs=100000"]
    # Validation so rare it never comes: the budget's end is validated all the same.
    once = [*run, "trainer.check_val_every_n_epoch=100000"]
    p = start_train([*once, "callbacks.time_budget.seconds=4"], outputs)
    rc, out = p.wait(timeout=180)
    assert rc == 0, out
    p.assert_no_survivors()
    ended = re.search(r"time budget of 0m04s spent: training ends at step (\d+) ", out)
    assert ended and "test  cer" in out, out
    # Progress lines count towards where the budget will end the run, not the 100000 epochs.
    assert re.search(r"train epoch \d+/~\d+ step \d+/~\d+ ", out), out
    assert re.findall(r"val +epoch \d+ step (\d+) ", out) == [ended.group(1)], out
    # last.ckpt holds the final step, whether or not a periodic save fell on it.
    last = _ckpt_dir(outputs, "budget") / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    steps = int(ckpt["global_step"])
    assert 0 < steps < 100000 * BATCHES and steps == int(ended.group(1))
    # The cycle ended with the budget: the rate is at its floor, not cut off mid-decay.
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert all(g["lr"] < g["max_lr"] * 1e-3 for g in groups), groups
    spent = next(v["spent_s"] for k, v in ckpt["callbacks"].items() if "TimeBudget" in k)
    assert spent >= 4.0

    # Resumed with a larger budget, the run goes on with what is left of it.
    q = start_train([*run, "callbacks.time_budget.seconds=6", "resume=auto"], outputs)
    rc, out = q.wait(timeout=180)
    assert rc == 0, out
    q.assert_no_survivors()
    assert "0m04s spent before this run" in out and "time budget of 0m06s spent" in out
    assert _global_step(last) > steps


def _errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("ERROR:")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.bogus=1"], "bogus"),
        (["trainer.max_epochs=ten"], "expected int"),
        (["data.test.kind=folder", "data.test.path=/nonexistent/lines"], "data folder not found"),
        (["+trainer.strategy=bogus"], "invalid strategy name"),  # refused by Lightning itself
        (["data.height=8"], "height must be at least 16"),
        (["data.batch_size=0"], "data.batch_size must be at least 1"),
        (["trainer.max_epochs=-1"], "needs a finite run"),
        (["seed=-1"], "seed must be between 0 and"),
        (["experiment_name="], "experiment_name must not be empty"),
        (["experiment_name=../../escaped"], "must be a plain folder name"),
        (["callbacks.time_budget.seconds=0"], "time_budget.seconds must be above 0"),
    ],
)
def test_bad_training_input_is_one_error_and_exit_2(
    start_train, tmp_path: Path, overrides: list[str], message: str
):
    outputs = tmp_path / "outputs"
    p = start_train([*SMOKE, *overrides], outputs)
    rc, out = p.wait(timeout=120)
    assert rc == 2, out
    errors = _errors(out)
    assert len(errors) == 1 and message in errors[0], out
    assert "Traceback" not in out
    assert not outputs.exists()  # nothing half-written
    p.assert_no_survivors()


def test_an_output_folder_that_cannot_be_made_is_one_error(start_train, tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    p = start_train(SMOKE, blocker / "outputs")
    rc, out = p.wait(timeout=120)
    assert rc == 2, out
    errors = _errors(out)
    assert len(errors) == 1 and "paths.outputs_root" in errors[0], out
    p.assert_no_survivors()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KiB tmpfs: room for a smoke checkpoint or two (~170-240 KB each, by optimizer),
    not for all the saves of a 4-epoch run."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)]
    if os.geteuid() != 0 or subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_is_one_error_and_keeps_the_last_checkpoint(start_train, small_disk: Path):
    p = start_train([*SMOKE, "trainer.max_epochs=4"], small_disk)
    rc, out = p.wait(timeout=120)
    assert rc == 1, out
    errors = _errors(out)
    assert len(errors) == 1 and "No space left on device" in errors[0], out
    assert "Traceback" not in out
    p.assert_no_survivors()
    ckpts = _ckpt_dir(small_disk, "smoke")
    assert not list(ckpts.glob("*.tmp-*")), list(ckpts.iterdir())  # no temp file left
    names = sorted(c.name for c in ckpts.glob("*.ckpt"))
    assert names in (["last.ckpt"], ["best.ckpt", "last.ckpt"]), names
    for name in names:
        assert _global_step(ckpts / name) >= 1  # whole and loadable
    for metrics in small_disk.glob("smoke/runs/*/metrics.jsonl"):
        assert all(json.loads(line) for line in metrics.read_text().splitlines())


def test_resuming_a_checkpoint_of_another_model_is_refused(start_train, tmp_path: Path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, other)
    outputs = tmp_path / "outputs"
    p = start_train([*SMOKE, f"resume={other}"], outputs)
    rc, out = p.wait(timeout=120)
    assert rc == 2 and "not a checkpoint of an ocrtrain" in out, out
    assert not outputs.exists()


def test_predict_and_eval_bad_input(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "ocrtrain"]
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, other)
    bad_img = tmp_path / "bad.png"
    bad_img.write_bytes(b"\x89PNG broken")
    cut = tmp_path / "cut.ckpt"  # the first bytes of a checkpoint (a zip archive)
    cut.write_bytes(other.read_bytes()[:200])
    good = tmp_path / "data"
    subprocess.run([*cli, "data", "synth", "--out", str(good), "--n", "2"], check=True)
    cases = [
        ([*cli, "predict", "--ckpt", str(other), str(bad_img)], "unreadable image"),
        ([*cli, "eval", "--ckpt", str(other), "--data", str(tmp_path / "none")], "not found"),
        ([*cli, "eval", "--ckpt", str(tmp_path / "x.ckpt"), "--data", str(good)], "not found"),
        ([*cli, "eval", "--ckpt", str(other), "--data", str(good)], "not a checkpoint"),
        ([*cli, "eval", "--ckpt", str(cut), "--data", str(good)], "(truncated or not one)"),
        ([*cli, "eval", "--ckpt", str(other), "--data", str(good), "--workers", "-1"], "--workers"),
        ([*cli, "data", "synth", "--out", str(good), "--n", "2"], "not empty"),
        (
            [
                *cli,
                "data",
                "synth",
                "--out",
                str(tmp_path / "f"),
                "--n",
                "2",
                "--fonts",
                "NoSuch.ttf",
            ],
            "--fonts",
        ),
    ]
    for cmd, message in cases:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 2, res.stderr
        assert len(_errors(res.stderr)) == 1 and message in res.stderr, res.stderr
    assert not (tmp_path / "f").exists()


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    from helpers import alive

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    cmd = [
        sys.executable,
        str(REPO / "runners" / "train.py"),
        *RUN,
        "trainer.max_epochs=1",
        f"paths.outputs_root={tmp_path}",
        "test_after_fit=false",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    seen: set[int] = {proc.pid}
    out = b""
    while True:
        seen.update(descendants(proc.pid))
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    wait_until(lambda: not alive(seen), timeout=10, what="no process left")
    assert b"it/s" in out and b"train epoch" not in out
