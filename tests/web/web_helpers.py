"""Helpers for the web UI tests: a real `ocrtrain ui` server process on a free loopback port,
waiting on conditions with deadlines, and finding a run's processes in /proc."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ocrtrain.procman.api import request_stop
from ocrtrain.procman.journal import ACTIVE_STATES, Journal

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_CONFIGS = FIXTURES / "configs"
FAKE_TRAINER = FIXTURES / "fake_train.py"
REAL_CONFIGS = REPO / "configs"
REAL_TRAINER = REPO / "runners" / "train.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_pids(run_id: str) -> list[int]:
    """Every live process tagged with the run's id (OCRTRAIN_RUN_ID in its environment)."""
    needle = f"OCRTRAIN_RUN_ID={run_id}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if needle in env.split(b"\0") and stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X"):
            out.append(int(entry))
    return out


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class UIServer:
    """One `python -m ocrtrain ui` process (the server the user would start)."""

    def __init__(
        self,
        home: Path,
        workdir: Path,
        *,
        config_dir: Path = FAKE_CONFIGS,
        train_script: Path = FAKE_TRAINER,
        grace: float = 5.0,
        host: str = "127.0.0.1",
        token: str | None = None,
        auth: str = "file",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`auth`: "file" (`--token-file` holding `token`, a random one by default),
        "generated" (the server makes one and saves it under the home) or "none" (--no-token).
        """
        self.home = home
        self.workdir = workdir
        self.config_dir = config_dir
        self.train_script = train_script
        self.grace = grace
        self.host = host
        self.auth = auth
        self.token = (token or secrets.token_urlsafe(16)) if auth == "file" else None
        self.extra_args = extra_args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> UIServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ocrtrain", "ui", "--host", self.host]
        argv += ["--port", str(self.port), "--config-dir", str(self.config_dir)]
        argv += ["--train-script", str(self.train_script), "--grace", str(self.grace)]
        if self.auth == "file":
            assert self.token is not None
            token_file = self.workdir / f"token-{self.port}"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            argv += ["--token-file", str(token_file)]
        elif self.auth == "none":
            argv.append("--no-token")
        argv += list(self.extra_args)
        env = dict(os.environ, OCRTRAIN_HOME=str(self.home), PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"ocrtrain ui exited {self.proc.returncode}:\n{self.log()}")
            if self.auth == "generated":
                saved = self.home / "ui-token"
                self.token = saved.read_text().strip() if saved.exists() else None
            try:
                r = httpx.get(f"{self.url}/api/health", headers=self.auth_headers(), timeout=2)
            except httpx.HTTPError:
                return False
            return r.is_success

        wait_for(healthy, timeout, "the UI server to answer /api/health", interval=0.1)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def page_url(self, rest: str = "/") -> str:
        """What a user opens: the printed URL (with the token, which the server trades for
        its HttpOnly cookie), then `rest`'s fragment (`/#/processes`)."""
        path, _, fragment = rest.partition("#")
        query = f"?token={self.token}" if self.token else ""
        return f"{self.url}{path or '/'}{query}" + (f"#{fragment}" if fragment else "")

    def client(self, **kw: Any) -> httpx.Client:
        headers = self.auth_headers()
        headers.update(kw.pop("headers", {}))
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert not pid_alive(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        assert not pid_alive(self.proc.pid), "the UI server outlived its stop"


def assert_no_run_processes(home: Path, timeout: float = 30.0) -> None:
    """Stop whatever a failed test left running, then require every run of `home` gone."""
    if not (home / "journal.sqlite3").exists():
        return
    with Journal(home) as journal:
        runs = journal.list_runs()
        for rec in journal.list_runs(states=ACTIVE_STATES):
            try:
                request_stop(journal, rec, force=True, source="test teardown")
            except Exception:
                pass
    ids = [r.id for r in runs]
    left: dict[str, list[int]] = {}

    def none_left() -> bool:
        left.clear()
        left.update({i: p for i in ids if (p := run_pids(i))})
        return not left

    wait_for(none_left, timeout, f"every run process to end (left: {left})", interval=0.1)


def read_sse(
    resp: httpx.Response, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Parse Server-Sent Events from a streaming response until `until(events)` is true."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in resp.iter_lines():
        if not line:
            if "data" in current:
                current["data"] = json.loads(current["data"])
                events.append(current)
                if until(events):
                    return events
            current = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        current[key] = value[1:] if value.startswith(" ") else value
    return events


def lines_of(events: list[dict[str, Any]]) -> list[str]:
    return [ln for e in events if e.get("event") == "lines" for ln in e["data"]["lines"]]


# A rank of a distributed job as torchrun starts one: its variables in the environment. It
# sends 1000 bytes over TCP (to itself), then waits to be stopped.
TALKING_RANK = (
    "import socket, time\n"
    "s = socket.create_server(('127.0.0.1', 0))\n"
    "c = socket.create_connection(s.getsockname())\n"
    "a, _ = s.accept()\n"
    "c.sendall(b'x' * 1000)\n"
    "a.recv(1000)\n"
    "time.sleep(120)\n"
)
RANK_ENV = {"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1", "WORLD_SIZE": "4"}


@contextlib.contextmanager
def rank_run() -> Iterator[str]:
    """`ocrtrain run --detach` of a talking rank (global 3, local 1, node 1); yields its run id
    and ends it with every process on the way out."""
    child = [sys.executable, "-c", TALKING_RANK]
    out = subprocess.run(
        [sys.executable, "-m", "ocrtrain", "run", "--detach", "--name", "rank", "--", *child],
        env={**os.environ, **RANK_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().split()[-1]
    try:
        yield run_id
    finally:
        journal = Journal()
        request_stop(journal, journal.resolve(run_id), force=True)
        wait_for(lambda: not run_pids(run_id), 20, "the rank's run to end")
