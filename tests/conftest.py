"""Every test gets its own `$OCRTRAIN_HOME`; the session fails if a test left a process behind."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import kill_all, tagged_pids

_HOMES: list[bytes] = []


@pytest.fixture(autouse=True)
def ocrtrain_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("ocrtrain-home")
    _HOMES.append(b"OCRTRAIN_HOME=" + str(home).encode())
    monkeypatch.setenv("OCRTRAIN_HOME", str(home))
    monkeypatch.delenv("OCRTRAIN_RUN_ID", raising=False)
    monkeypatch.delenv("OCRTRAIN_RUN_DIR", raising=False)
    return home


@pytest.fixture(autouse=True)
def no_leftover_runs(ocrtrain_home: Path) -> Iterator[None]:
    """After each test, no process may carry a run id of this test's journal."""
    yield
    home = str(ocrtrain_home).encode()
    left = [
        pid for pid in tagged_pids("OCRTRAIN_RUN_ID") if _has_env(pid, b"OCRTRAIN_HOME=" + home)
    ]
    if left:
        kill_all(left)
        pytest.fail(f"processes of this test's runs were left running: {left}")


def _has_env(pid: int, item: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return item in f.read().split(b"\0")
    except OSError:
        return False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    del exitstatus
    if os.environ.get("OCRTRAIN_RUN_ID"):
        return  # the suite itself runs inside a supervised run
    left = [
        pid
        for pid in tagged_pids("OCRTRAIN_RUN_ID") + tagged_pids("OCRTRAIN_WATCHDOG_FOR")
        if any(_has_env(pid, home) for home in _HOMES)
    ]
    if left:
        kill_all(left)
        print(f"\nERROR: the test session left run processes behind (killed now): {left}")
        session.exitstatus = 1
