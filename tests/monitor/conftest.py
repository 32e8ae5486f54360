"""Every monitor test gets its own `$OCRTRAIN_HOME` and must leave no process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mon_helpers import Identity, alive, assert_none_alive, kill_all

from ocrtrain.procman.journal import Journal


@pytest.fixture(autouse=True)
def ocrtrain_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "ocrtrain-home"
    monkeypatch.setenv("OCRTRAIN_HOME", str(home))
    return home


@pytest.fixture
def journal(ocrtrain_home: Path) -> Iterator[Journal]:
    j = Journal()
    yield j
    j.close()


class Tracker:
    """Processes a test started, by identity; the fixture asserts none survives the test."""

    def __init__(self) -> None:
        self.idents: list[Identity] = []

    def add(self, *idents: Identity) -> None:
        self.idents.extend(idents)


@pytest.fixture
def procs() -> Iterator[Tracker]:
    tracker = Tracker()
    yield tracker
    try:
        assert_none_alive(tracker.idents, timeout=15.0)
    finally:
        leftovers = [i for i in tracker.idents if alive(i)]
        kill_all(leftovers)
    assert not leftovers, f"processes outlived the test: {leftovers}"


@pytest.fixture
def other_user() -> Iterator[str]:
    """A temporary unprivileged system user (root only)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a temporary user")
    name = f"ocrtest-{os.urandom(3).hex()}"
    subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
