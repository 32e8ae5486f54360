"""Training speed: seed-style DataLoaders vs this project's defaults, throughput, and proof
that a SIGKILLed trainer leaves no DataLoader worker behind.

    .venv/bin/python bench/train_speed.py [--repeats 2] [--ckpt PATH]

Seed-style: `persistent_workers: false`, 2 train / 1 val workers (the old "safe" advice), and
torch's default intra-op threads (one per core), as the seed project ran. Ours: this project's
defaults (`dataloaders=default`: persistent workers on all cores, safe because every worker has
a parent-death signal and the run is supervised; one torch thread less than the cores). A third
variant, seed-style loaders with our threads, separates the loaders' share. Same run
otherwise: 10 epochs of 20 training and 5 validation batches of 32 lines, the smoke-sized
model (so the loaders matter).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "runners" / "train.py"
SAME_RUN = [
    "debug=smoke",
    "data.batch_size=32",
    "data.max_width=800",
    "data.train.batches_per_epoch=20",
    "data.val.size=160",
    "trainer.max_epochs=10",
    "test_after_fit=false",
    "callbacks.checkpoint.every_n_train_steps=100000",
]
SEED_STYLE = ["dataloaders=seed_style", "torch_threads=null"]
SEED_LOADERS = ["dataloaders=seed_style"]
OURS = ["dataloaders=default"]


def _run(overrides: list[str], outputs: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, str(RUNNER), f"paths.outputs_root={outputs}", *overrides]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"run failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return elapsed


def _children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def sigkill_check(outputs: Path, env: dict[str, str]) -> tuple[int, float]:
    """SIGKILL an unsupervised trainer with persistent workers; time until its workers are gone.

    No supervisor here on purpose: only the workers' parent-death signal can end them.
    """
    env = {**env, "OCRTRAIN_NO_SUPERVISOR": "1"}
    cmd = [
        sys.executable,
        str(RUNNER),
        f"paths.outputs_root={outputs}",
        "experiment_name=kill",
        *SAME_RUN,
        *OURS,
        "trainer.max_epochs=1000",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    while any(_alive(w) for w in workers) and time.monotonic() - t0 < 10:
        time.sleep(0.005)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    return len(workers) - len(left), time.monotonic() - t0 if not left else float("inf")


def inference_speed(ckpt: str | None, outputs: Path, n: int = 256) -> tuple[float, str]:
    """Lines/s of `predict_images` (CPU) on `n` synthetic lines."""
    from ocrtrain.train.data.export import write_synth_folder
    from ocrtrain.train.predict import predict_images

    data = write_synth_folder(outputs / "infer", n, ["pillow"], seed=9)
    images = sorted((data / "images").glob("*.png"))
    if ckpt is None:
        ckpt = str(next(outputs.glob("*/latest/checkpoints/last.ckpt")))
    predict_images(ckpt, images[:32])  # warm-up
    t0 = time.perf_counter()
    predict_images(ckpt, images)
    return n / (time.perf_counter() - t0), ckpt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant (alternated)")
    parser.add_argument("--ckpt", help="checkpoint for the inference figure (default: bench's)")
    args = parser.parse_args(argv)
    env = {**os.environ}
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("OCRTRAIN_HOME", str(Path(tmp) / "home"))
        outputs = Path(tmp) / "outputs"
        times: dict[str, list[float]] = {"seed-style": [], "seed-loaders": [], "ours": []}
        variants = (("seed-style", SEED_STYLE), ("seed-loaders", SEED_LOADERS), ("ours", OURS))
        for i in range(args.repeats):
            for name, extra in variants:
                ov = [*SAME_RUN, *extra, f"experiment_name={name}-{i}"]
                times[name].append(_run(ov, outputs, env))
                print(f"{name:12s} run {i + 1}: {times[name][-1]:.1f} s", flush=True)
        killed, gone_s = sigkill_check(outputs, env)
        infer, ckpt = inference_speed(args.ckpt, outputs)
        lines = 10 * (20 + 5) * 32
        seed, ours = min(times["seed-style"]), min(times["ours"])
        loaders = min(times["seed-loaders"])
        print()
        print(f"| variant | end-to-end (best of {args.repeats}) | lines/s (train+val) |")
        print("|---|---|---|")
        print(
            f"| seed-style (persistent_workers=false, 2/1 workers, torch default threads) "
            f"| {seed:.1f} s | {lines / seed:.0f} |"
        )
        print(
            f"| seed-style loaders, our torch threads | {loaders:.1f} s | {lines / loaders:.0f} |"
        )
        print(f"| ours (this project's defaults) | {ours:.1f} s | {lines / ours:.0f} |")
        print(f"\nspeed-up ours vs seed-style: {seed / ours:.2f}x")
        print(f"speed-up of the loader settings alone (same threads): {loaders / ours:.2f}x")
        print(
            f"SIGKILL of an unsupervised trainer: {killed} workers, all gone after "
            f"{gone_s * 1000:.0f} ms (parent-death signal)"
        )
        print(f"inference: {infer:.0f} lines/s on CPU, batch 32 ({ckpt})")
        print(
            json.dumps(
                {
                    "seed_style_s": times["seed-style"],
                    "seed_loaders_s": times["seed-loaders"],
                    "ours_s": times["ours"],
                    "ratio": seed / ours,
                    "loaders_ratio": loaders / ours,
                    "workers_killed": killed,
                    "workers_gone_ms": gone_s * 1000,
                    "inference_lines_per_s": infer,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
