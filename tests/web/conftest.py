"""Fixtures for the web UI tests: an isolated `$OCRTRAIN_HOME`, and UI servers that are
stopped at the end, with a check that no server or run process remains."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import CHROMIUM, CHROMIUM_ARGS, UIServer, assert_no_run_processes, pid_alive


@pytest.fixture(autouse=True)
def ocrtrain_home(ocrtrain_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own journal: the suite-wide tmp `$OCRTRAIN_HOME` (so the suite's
    leak check covers these tests too), without UI settings leaking in from the caller."""
    monkeypatch.setenv("OCRTRAIN_HOME", str(ocrtrain_home))
    for name in ("OCRTRAIN_CONFIG_DIR", "OCRTRAIN_TRAIN_SCRIPT", "OCRTRAIN_UI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return ocrtrain_home


@pytest.fixture
def make_server(ocrtrain_home: Path, tmp_path: Path) -> Iterator[Callable[..., UIServer]]:
    """Start UI servers; at the end stop them, and check no server or run process remains."""
    servers: list[UIServer] = []

    def make(**kw: Any) -> UIServer:
        server = UIServer(ocrtrain_home, tmp_path / "cwd", **kw)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
    for server in servers:
        if server.proc is not None:
            assert not pid_alive(server.proc.pid)
    assert_no_run_processes(ocrtrain_home)


@pytest.fixture
def server(make_server: Callable[..., UIServer]) -> UIServer:
    return make_server()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # The server's CSP forbids eval, which Playwright's string predicates (wait_for_function)
    # use; test_page_runs_under_its_csp loads the page with the CSP enforced.
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
