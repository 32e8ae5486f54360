"""Every monitor test gets its own `$OCRTRAIN_HOME` and must leave no process behind."""

from __future__ import annotations

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
