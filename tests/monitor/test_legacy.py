"""`--match`: pre-ocrtrain processes matched by interpreter + script path, never decoys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mon_helpers import (
    BIN,
    assert_none_alive,
    identity,
    ocrtrain,
    readable_monitor_script,
    wait_until,
)

from ocrtrain.monitor.legacy import script_matches, script_of

PAUSE = (BIN / "pause.py").read_text()
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under /root, unreadable to others


@pytest.mark.parametrize(
    ("argv", "script"),
    [
        (["python3", "runners/train.py", "--lr", "3"], "runners/train.py"),
        (["/usr/bin/python3.11", "-u", "-X", "dev", "runners/train.py"], "runners/train.py"),
        (["python", "-W", "ignore", "/a/runners/train.py"], "/a/runners/train.py"),
        (["python", "-m", "ocrtrain", "ps", "--match", "runners/train.py"], "ocrtrain"),
        (["python", "-c", "import runners.train  # runners/train.py"], None),
        (["python"], None),
        (["vim", "runners/train.py"], None),
        (["grep", "runners/train.py"], None),
        (["less", "train.log"], None),
        (["bash", "-c", "python runners/train.py"], None),
        (["pythonista", "runners/train.py"], None),
        (["python3", "editor.py", "runners/train.py"], "editor.py"),
    ],
)
def test_script_of(argv: list[str], script: str | None) -> None:
    assert script_of(argv) == script


@pytest.mark.parametrize(
    ("script", "pattern", "hit"),
    [
        ("runners/train.py", "runners/train.py", True),
        ("./runners/train.py", "runners/train.py", True),
        ("/home/u/p/runners/train.py", "runners/train.py", True),
        ("/home/u/p/myrunners/train.py", "runners/train.py", False),
        ("/home/u/p/runners/train.py.bak", "runners/train.py", False),
        ("/home/u/p/runners/train.py", "/home/u/p/runners/train.py", True),
        ("/other/runners/train.py", "/home/u/p/runners/train.py", False),
        ("/home/u/p/runners/train_v2.py", "runners/train*.py", True),
    ],
)
def test_script_matches(script: str, pattern: str, hit: bool) -> None:
    assert script_matches(script, pattern) is hit


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A world-readable folder with runners/train.py and train.log (both: the pause script)."""
    d = Path(tempfile.mkdtemp(prefix="ocrtrain-legacy-"))
    d.chmod(0o755)
    (d / "runners").mkdir(mode=0o755)
    (d / "ready").mkdir()
    (d / "ready").chmod(0o1777)  # the other user's process signals readiness here too
    for name in ("runners/train.py", "train.log", "editor.py"):
        (d / name).write_text(PAUSE)
        (d / name).chmod(0o644)
    yield d
    shutil.rmtree(d)


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRTRAIN_RUN")}
    env.update(PAUSE_READY=str(workdir / "ready" / "r"), **extra)
    return env


def test_match_lists_and_cleans_only_real_training_processes(
    workdir: Path, other_user: str, procs
) -> None:  # type: ignore[no-untyped-def]
    import pwd

    uid = pwd.getpwnam(other_user).pw_uid
    env = _env(workdir)
    popen: list[subprocess.Popen[bytes]] = []

    def spawn(argv: list[str], executable: str | None = None, **kw) -> int:  # type: ignore[no-untyped-def]
        p = subprocess.Popen(argv, executable=executable, cwd=workdir, env=kw.pop("env", env), **kw)
        popen.append(p)
        procs.add(identity(p.pid))
        return p.pid

    try:
        # The real pre-ocrtrain trainer, with one forked worker (same argv).
        trainer = spawn([sys.executable, "-u", "runners/train.py", "--epochs", "3"],
                        env=_env(workdir, PAUSE_FORKS="1"))  # fmt: skip
        # Decoys: an editor, a pager, grep, code mentioning the path, another script given the
        # path as an argument, and another user's identical trainer.
        decoys = [
            spawn(["vim", "runners/train.py"], executable=sys.executable),
            spawn(["less", "train.log"], executable=sys.executable),
            spawn(["grep", "runners/train.py"], stdin=subprocess.PIPE),
            spawn([sys.executable, "-c", "import time; time.sleep(60)  # runners/train.py"]),
            spawn([sys.executable, "editor.py", "runners/train.py"]),
        ]
        foreign = spawn([SYSTEM_PYTHON, "runners/train.py"], user=uid)
        ready = lambda: len(list((workdir / "ready").glob("r.*")))  # noqa: E731
        wait_until(lambda: ready() >= 6, 10, "the python processes to start")
        worker = next(
            int(f.name.split(".")[1]) for f in (workdir / "ready").glob("r.*")
            if int(f.name.split(".")[1]) not in (trainer, *decoys, foreign)
        )  # fmt: skip
        procs.add(identity(worker))
        everyone = [trainer, worker, *decoys, foreign]
        before = {pid: identity(pid) for pid in everyone}

        out = ocrtrain("ps", "--json", "--match", "runners/train.py")
        assert out.returncode == 0, out.stderr
        listed = {p["pid"] for p in json.loads(out.stdout)["legacy"]}
        assert {trainer, worker} <= listed
        assert not listed & {*decoys, foreign}

        out = ocrtrain("ps", "--json", "--match", "runners/train.py", "--all-users")
        assert foreign in {p["pid"] for p in json.loads(out.stdout)["legacy"]}

        pattern = str(workdir / "runners/train.py")  # ours only: other tests may run trainers
        out = ocrtrain("cleanup", "--match", pattern, "--dry-run")
        assert out.returncode == 0, out.stderr
        assert f"would signal pid {trainer} " in out.stdout
        assert all(f"pid {d} " not in out.stdout for d in (*decoys, foreign))
        assert all(identity(pid) == before[pid] for pid in everyone)  # dry run: all alive

        out = ocrtrain("cleanup", "--match", pattern, "--yes", "--json")
        assert out.returncode == 0, out.stderr
        ended = {e["pid"] for e in json.loads(out.stdout)["report"]["ended"]}
        assert ended == {trainer, worker}
        assert_none_alive([before[trainer], before[worker]])
        for pid in (*decoys, foreign):
            assert identity(pid) == before[pid], f"decoy {pid} was touched"
    finally:
        for p in popen:
            p.kill()
            p.wait()


def test_all_users_needs_root(workdir: Path, other_user: str) -> None:
    import pwd

    uid = pwd.getpwnam(other_user).pw_uid
    script = readable_monitor_script(workdir / "checkout")
    out = subprocess.run(
        [SYSTEM_PYTHON, str(script), "--list", "--match", "runners/train.py", "--all-users"],
        capture_output=True,
        text=True,
        timeout=60,
        user=uid,
        cwd=workdir,
        env={"PATH": "/usr/bin:/bin", "OCRTRAIN_HOME": str(workdir / "home")},
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("ERROR:") and "root" in out.stderr


def test_match_checks_the_executable_not_just_argv0(workdir: Path, procs) -> None:  # type: ignore[no-untyped-def]
    """A process may name itself `python3 runners/train.py`: only a Python executable
    (/proc/PID/exe) running the script is matched."""
    env = _env(workdir)
    trainer = subprocess.Popen([sys.executable, "runners/train.py"], cwd=workdir, env=env)
    # `tail -f runners/train.py`, showing itself as `python3 -f runners/train.py`.
    decoy = subprocess.Popen(
        ["python3", "-f", "runners/train.py"], executable="/usr/bin/tail", cwd=workdir, env=env
    )
    procs.add(identity(trainer.pid), identity(decoy.pid))
    try:
        wait_until(lambda: any((workdir / "ready").glob("r.*")), 10, "the trainer to start")
        argv = Path(f"/proc/{decoy.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert script_of(argv) == "runners/train.py"  # its argv alone would match
        out = ocrtrain("ps", "--json", "--match", str(workdir / "runners/train.py"))
        assert out.returncode == 0, out.stderr
        listed = {p["pid"] for p in json.loads(out.stdout)["legacy"]}
        assert trainer.pid in listed and decoy.pid not in listed
    finally:
        for p in (trainer, decoy):
            p.kill()
            p.wait()
