"""The UI attacked as another local user or a hostile web page would: code through overrides,
oversized bodies and numbers, bad tokens, open redirects, framing, too many runs. Every test
runs a real `ocrtrain ui` server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from web_helpers import REAL_CONFIGS, UIServer, wait_for

pytestmark = pytest.mark.timeout(180)

LONG = ["debug=smoke", "trainer.max_steps=100000"]
CODE_OVERRIDES = [
    "model._target_=os.system",
    "+callbacks.w._target_=pathlib.Path.write_bytes",
    "+callbacks.w={_target_:pathlib.Path.write_bytes}",
    "model._partial_=true",
    "++model._args_=[id]",
    "trainer._convert_=all",
    "~model._target_",
    "seed=${oc.env:HOME}",
    "experiment_name='${oc.decode:1}'",
    "experiment_name=\\${oc.env:HOME}",
    "hydra.run.dir=/tmp/x",
    "hydra/launcher=basic",
    "+hydra.job.chdir=true",
    "model@callbacks.x=crnn",
    "seed=choice(1,2)",
    "+new_key=1",
    "++new_key=1",
    "debug=/etc/passwd",
    "experiment_name=../../x",
    "experiment_name=a/b",
    "paths.outputs_root=/tmp/elsewhere",
    "paths.ckpt_dir=/tmp/elsewhere",
    "callbacks.checkpoint.dirpath=/tmp/elsewhere",
    "callbacks.metrics.path=../../metrics.jsonl",
    "resume=/etc/hostname",
]


def _memory_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _raw(port: int, head: str, body_bytes: int = 0, chunked: bool = False) -> bytes:
    """Send a request by hand (no client normalizes the path or limits the body); return
    what the server answered before it closed or stopped reading."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()
    try:
        sock.sendall(head.encode("latin-1"))
        block = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < body_bytes:
                data = block if not chunked else b"%x\r\n%s\r\n" % (len(block), block)
                sock.sendall(data)
                sent += len(block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused mid-body: the server stopped reading, as it should
        sock.settimeout(10)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and len(answer) > 64:
                    break
        except OSError:
            pass
    finally:
        sock.close()
    return bytes(answer)


@pytest.fixture
def real_server(make_server: Callable[..., UIServer]) -> UIServer:
    """The repository's configs (paths, callbacks, resume), the stand-in trainer."""
    return make_server(config_dir=REAL_CONFIGS)


def test_overrides_that_reach_code_or_escape_are_422(real_server: UIServer, tmp_path: Path) -> None:
    crafted = tmp_path / "x.ckpt"
    crafted.write_bytes(b"not ours")
    with real_server.client() as c:
        for ov in [*CODE_OVERRIDES, f"resume={crafted}"]:
            for path in ("/api/config/validate", "/api/runs"):
                r = c.post(path, json={"overrides": ["debug=smoke", ov]})
                assert r.status_code == 422, (ov, path, r.text)
        assert c.get("/api/runs").json()["runs"] == []
        # What the form offers still passes.
        ok = ["debug=smoke", "trainer.max_epochs=3", "resume=auto", "paths.outputs_root=outputs/x"]
        assert c.post("/api/config/validate", json={"overrides": ok}).status_code == 200


def test_non_ascii_and_wrong_tokens_are_401_never_500(server: UIServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get("/api/health", params={"token": "é"}).status_code == 401
        r = anon.get("/api/health", headers={"Authorization": "Bearer é".encode()})
        assert r.status_code == 401
        r = anon.get("/api/health", headers={"Cookie": "ocrtrain_token=\u00e9t\u00e9".encode()})
        assert r.status_code == 401
        assert server.token and server.token not in r.text


def test_no_open_redirect(server: UIServer) -> None:
    for path in ("//evil.example/", "/\\evil.example/", "///evil.example/x"):
        head = (
            f"GET {path}?token={server.token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Connection: close\r\n\r\n"
        )
        answer = _raw(server.port, head).decode("latin-1")
        assert answer.startswith("HTTP/1.1 303"), answer
        location = next(
            ln.split(":", 1)[1].strip()
            for ln in answer.split("\r\n")
            if ln.lower().startswith("location:")
        )
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location


def test_pages_and_answers_cannot_be_framed(server: UIServer) -> None:
    with server.client() as c:
        for path in ("/", "/api/health", "/docs"):
            r = c.get(path)
            assert r.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert "script-src" not in c.get("/").headers["content-security-policy"]
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get("/").headers["x-frame-options"] == "DENY"  # the 401 page too


@pytest.mark.parametrize("chunked", [False, True])
def test_100_mb_body_refused_with_memory_flat(server: UIServer, chunked: bool) -> None:
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {100 << 20}"
    head = (
        f"POST /api/config/validate HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
        f"{length}\r\nConnection: close\r\n\r\n"
    )
    before = _memory_peak_kib(server.pid)
    answer = _raw(server.port, head, body_bytes=100 << 20, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    grown_mib = (_memory_peak_kib(server.pid) - before) / 1024
    assert grown_mib < 32, f"the server's peak memory grew {grown_mib:.0f} MiB"
    with server.client() as c:  # and it still serves
        assert c.get("/api/health").status_code == 200


def test_oversized_numbers_are_422(server: UIServer) -> None:
    with server.client() as c:
        r = c.post("/api/runs", json={"overrides": ["debug=smoke"]})
        run_id = r.json()["id"]
        wait_for(
            lambda: c.get(f"/api/runs/{run_id}").json()["run"]["state"] != "starting", 30, "start"
        )
        for path in (
            f"/api/runs/{run_id}/events?after=99999999999999999999",
            f"/api/runs/{run_id}/logs?offset=1e20",
            f"/api/runs/{run_id}/logs?tail=-1",
            f"/api/runs/{run_id}/metrics?offset=18446744073709551616",
            "/api/runs?limit=1e9",
            f"/api/runs/{run_id}/logs/search?q=a&limit=nan",
        ):
            assert c.get(path).status_code == 422, path
        r = c.post(
            f"/api/runs/{run_id}/stop",
            content=b'{"grace": 1e999}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text


def test_concurrent_runs_capped_with_429(make_server: Callable[..., UIServer]) -> None:
    server = make_server(extra_args=("--max-runs", "1"))
    with server.client() as c:
        first = c.post("/api/runs", json={"overrides": LONG})
        assert first.status_code == 201, first.text
        second = c.post("/api/runs", json={"overrides": LONG})
        assert second.status_code == 429
        assert "--max-runs" in second.json()["detail"]
        run_id = first.json()["id"]
        assert c.post(f"/api/runs/{run_id}/stop", json={"force": True}).status_code == 202
        wait_for(
            lambda: (
                c.get(f"/api/runs/{run_id}").json()["run"]["state"]
                not in ("starting", "running", "stopping")
            ),
            60,
            "the first run to end",
        )
        again = c.post("/api/runs", json={"overrides": ["debug=smoke"]})
        assert again.status_code == 201, again.text
