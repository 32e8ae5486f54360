"""The HTTP API against a real `ocrtrain ui` server and real supervised runs of the stand-in
trainer (tests/web/fixtures)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_helpers import (
    FAKE_CONFIGS,
    UIServer,
    lines_of,
    pid_alive,
    rank_run,
    read_sse,
    run_pids,
    wait_for,
)

from ocrtrain.procman.api import request_stop
from ocrtrain.procman.journal import Journal

pytestmark = pytest.mark.timeout(180)

LONG = ["debug=smoke", "trainer.max_steps=100000"]


def launch(client: httpx.Client, overrides: list[str], name: str | None = None) -> str:
    r = client.post("/api/runs", json={"overrides": overrides, "name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def run_state(client: httpx.Client, run_id: str) -> str:
    return str(client.get(f"/api/runs/{run_id}").json()["run"]["state"])


def wait_state(client: httpx.Client, run_id: str, states: set[str], timeout: float = 60) -> str:
    return wait_for(
        lambda: (s := run_state(client, run_id)) in states and s,
        timeout,
        f"run {run_id} to reach {states}",
        interval=0.1,
    )


def test_health_page_docs(server: UIServer) -> None:
    with server.client() as c:
        health = c.get("/api/health").json()
        assert health["ok"] and health["config_ok"] and health["train_script_ok"]
        assert health["token_required"] is True
        page = c.get("/")
        assert page.status_code == 200 and "<title>ocrtrain</title>" in page.text
        assert "ocrtrain_csrf" in page.cookies
        assert c.get("/static/app.js").status_code == 200
        docs = c.get("/docs")
        assert docs.status_code == 200
        assert "cdn" not in docs.text.lower()  # works without internet
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/static/swagger/{asset}" in docs.text
            assert c.get(f"/static/swagger/{asset}").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        for p in ("/api/health", "/api/runs", "/api/runs/{run_id}", "/api/runs/{run_id}/stop"):
            assert p in paths
        assert "/api/runs/{run_id}/logs" in paths and "/api/processes" in paths
        assert "/api/cleanup" in paths


def test_schema_from_hydra_config(server: UIServer) -> None:
    with server.client() as c:
        schema = c.get("/api/config/schema").json()
        groups = {g["name"]: g for g in schema["groups"]}
        assert groups["model"]["options"] == ["big", "tiny"]
        assert groups["model"]["default"] == "tiny"
        assert groups["debug"]["preset"] and groups["debug"]["default"] is None
        fields = {f["key"]: f for s in schema["sections"] for f in s["fields"]}
        assert fields["trainer.max_steps"] == {
            "key": "trainer.max_steps",
            "type": "int",
            "default": 1000,
            "help": None,
        }
        assert fields["trainer.lines_per_s"]["type"] == "float"
        assert fields["model.channels"]["type"] == "list"
        assert schema["argv_prefix"][1].endswith("fake_train.py")
        smoke = c.get("/api/config/schema", params={"choice": "debug=smoke"}).json()
        fields = {f["key"]: f for s in smoke["sections"] for f in s["fields"]}
        assert fields["trainer.max_steps"]["default"] == 40
        assert c.get("/api/config/schema", params={"choice": "model=nope"}).status_code == 422


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=many", "expected int"),
        ("trainer.nope=1", "nope"),
        ("model=huge", "huge"),
        ("--multirun", "is not an override"),
        ("hydra.run.dir=/tmp/x", "Hydra's own settings"),
        ("seed=1; rm -rf /", ""),
        ("seed", "is not an override"),
    ],
)
def test_bad_overrides_are_422(server: UIServer, override: str, message: str) -> None:
    with server.client() as c:
        r = c.post("/api/config/validate", json={"overrides": [override]})
        assert r.status_code == 422, r.text
        assert message in r.json()["detail"]
        r = c.post("/api/runs", json={"overrides": [override]})
        assert r.status_code == 422
        assert c.get("/api/runs").json()["runs"] == []


def test_validate_shows_exact_argv(server: UIServer) -> None:
    with server.client() as c:
        r = c.post(
            "/api/config/validate",
            json={"overrides": ["debug=smoke", "model=big", "experiment_name='a b'"]},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["argv"][0] == sys.executable
        assert body["argv"][2:] == ["debug=smoke", "model=big", "experiment_name='a b'"]
        assert body["command"].endswith("debug=smoke model=big 'experiment_name='\"'\"'a b'\"'\"''")


def test_launch_stream_logs_and_graceful_stop(server: UIServer) -> None:
    with server.client() as c:
        run_id = launch(c, LONG, name="api-test")
        runs = c.get("/api/runs").json()["runs"]
        assert [r["id"] for r in runs] == [run_id]
        assert runs[0]["name"] == "api-test" and runs[0]["overrides"] == LONG
        assert wait_state(c, run_id, {"running"})
        with c.stream("GET", f"/api/runs/{run_id}/logs") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = read_sse(resp, lambda ev: len(lines_of(ev)) >= 8)
        lines = lines_of(events)
        assert lines[0] == "fake trainer experiment=smoke hidden=16"  # ANSI stripped
        assert lines[1] == "progress 100%"  # a \r progress bar reduced to its last state
        assert lines[2].startswith("train epoch 0 step 1/100000")
        assert all(e["id"] == str(e["data"]["offset"]) for e in events if e["event"] == "lines")

        pids = run_pids(run_id)
        assert len(pids) >= 2  # trainer + worker
        r = c.post(f"/api/runs/{run_id}/stop", json={"force": False})
        assert r.status_code == 202, r.text
        stop = r.json()["stop"]
        assert stop["grace"] == 5.0 and not stop["force"] and stop["source"] == "web"
        assert wait_state(c, run_id, {"stopped"}) == "stopped"
        wait_for(lambda: not run_pids(run_id), 20, "the run's processes to end")
        detail = c.get(f"/api/runs/{run_id}").json()
        kinds = [e["kind"] for e in detail["events"]]
        assert "stop_requested" in kinds and kinds[-1] == "finished"
        assert detail["stop"]["source"] == "web"
        assert r.json()["id"] == run_id
        log = Path(detail["run"]["log_path"]).read_text()
        assert "SIGTERM received" in log
        assert c.post(f"/api/runs/{run_id}/stop", json={}).status_code == 409


def test_force_kill(server: UIServer) -> None:
    with server.client() as c:
        run_id = launch(c, LONG)
        wait_state(c, run_id, {"running"})
        wait_for(lambda: len(run_pids(run_id)) >= 2, 20, "trainer and worker")
        r = c.post(f"/api/runs/{run_id}/stop", json={"force": True})
        assert r.status_code == 202 and r.json()["stop"]["force"] is True
        assert wait_state(c, run_id, {"stopped", "failed"}, timeout=20)
        wait_for(lambda: not run_pids(run_id), 10, "every process of the killed run to end")


def test_unknown_run_is_404(server: UIServer) -> None:
    with server.client() as c:
        assert c.get("/api/runs/nope").status_code == 404
        assert c.post("/api/runs/nope/stop", json={}).status_code == 404
        assert c.get("/api/runs/nope/logs").status_code == 404
        assert c.post("/api/runs", json={"overrides": [], "name": "bad name!"}).status_code == 422


def test_finished_run_logs_metrics_and_resume(server: UIServer) -> None:
    with server.client() as c:
        run_id = launch(c, ["debug=smoke", "trainer.max_steps=30", "trainer.lines_per_s=300"])
        assert wait_state(c, run_id, {"succeeded"}) == "succeeded"
        with c.stream("GET", f"/api/runs/{run_id}/logs") as resp:
            events = read_sse(resp, lambda ev: ev[-1]["event"] == "end")
        assert events[-1]["event"] == "end" and events[-1]["data"]["state"] == "succeeded"
        lines = lines_of(events)
        assert lines[-1] == "done" and sum(ln.startswith("train epoch") for ln in lines) == 30
        # Resume from an offset (as EventSource does with Last-Event-ID): only what follows.
        first = next(e for e in events if e["event"] == "lines")
        mid = int(first["data"]["offset"])
        headers = {"Last-Event-ID": str(mid)}
        with c.stream("GET", f"/api/runs/{run_id}/logs", headers=headers) as resp:
            rest = read_sse(resp, lambda ev: ev[-1]["event"] == "end")
        assert lines_of(rest) == lines[len(first["data"]["lines"]) :]
        hits = c.get(f"/api/runs/{run_id}/logs/search", params={"q": "STEP 30/"}).json()["hits"]
        assert len(hits) == 1 and "step 30/30" in hits[0]["text"]

        m = c.get(f"/api/runs/{run_id}/metrics").json()
        assert len(m["points"]) == 30 and m["points"][0]["step"] == 1
        assert "train/loss" in m["points"][0] and any("val/cer" in p for p in m["points"])
        again = c.get(f"/api/runs/{run_id}/metrics", params={"offset": m["offset"]}).json()
        assert again["points"] == [] and again["offset"] == m["offset"]


def test_processes_and_prometheus(server: UIServer) -> None:
    with server.client() as c:
        run_id = launch(c, LONG)
        wait_state(c, run_id, {"running"})
        wait_for(lambda: len(run_pids(run_id)) >= 2, 20, "trainer and worker")

        def run_view() -> dict[str, Any] | None:
            snap = c.get("/api/processes").json()
            view = next((r for r in snap["runs"] if r["id"] == run_id), None)
            return view if view and len(view["processes"]) >= 2 else None

        view = wait_for(run_view, 20, "the run in /api/processes", interval=0.3)
        snap = c.get("/api/processes").json()
        assert {"taken_at", "host", "runs", "orphans"} <= set(snap)
        assert {"cpu_percent", "mem_total", "mem_used", "gpus"} <= set(snap["host"])
        pids = {p["pid"] for p in view["processes"]}
        assert set(run_pids(run_id)) & pids
        mine = c.get(f"/api/runs/{run_id}/processes").json()["run"]
        assert mine["id"] == run_id
        text = c.get("/metrics").text
        assert 'ocrtrain_runs{state="running"} 1.0' in text
        labels = rf'\{{name="train",run="{run_id}"\}}'
        assert re.search(rf"ocrtrain_run_processes{labels} \d", text)
        assert re.search(rf"ocrtrain_run_rss_bytes{labels} \d", text)
        assert "ocrtrain_orphans " in text
        # The run's training progress, from its metrics.jsonl.
        step = rf"ocrtrain_run_step{labels} \d"
        wait_for(lambda: re.search(step, c.get("/metrics").text), 20, "the run's step")
        assert "# TYPE ocrtrain_run_train_loss gauge" in c.get("/metrics").text
        # The supervisor's resource samples of the run, for the run page's charts.
        samples = wait_for(
            lambda: c.get(f"/api/runs/{run_id}/resources").json()["samples"], 20, "a sample"
        )
        assert samples[0]["processes"] >= 1 and samples[0]["rss_mib"] > 0
        c.post(f"/api/runs/{run_id}/stop", json={"force": True})
        wait_for(lambda: not run_pids(run_id), 20, "the run to end")


def test_cleanup_dry_run(server: UIServer) -> None:
    with server.client() as c:
        r = c.post("/api/cleanup", json={"dry_run": True})
        if r.status_code == 503:
            pytest.skip(r.json()["detail"])
        assert r.status_code == 200, r.text
        assert r.json()["dry_run"] is True and "plan" in r.json()


def test_csrf(server: UIServer) -> None:
    body = '{"overrides": []}'
    with server.client() as c:
        # A cross-site HTML form (urlencoded or text/plain) is refused...
        for ctype in ("application/x-www-form-urlencoded", "text/plain"):
            r = c.post("/api/runs", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 403 and "CSRF" in r.json()["detail"]
        # ...so is JSON from a foreign origin, or anything with cross-site fetch metadata.
        r = c.post("/api/runs", json={}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/api/runs", json={}, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        # The page: same-origin Origin plus the double-submit header.
        c.get("/")
        token = c.cookies["ocrtrain_csrf"]
        origin = {"Origin": server.url}
        r = c.post(
            "/api/config/validate",
            content=body,
            headers={**origin, "Content-Type": "text/plain", "X-Ocrtrain-CSRF": token},
        )
        assert r.status_code != 403
        r = c.post(
            "/api/config/validate",
            content=body,
            headers={**origin, "Content-Type": "text/plain", "X-Ocrtrain-CSRF": "forged"},
        )
        assert r.status_code == 403
        # Scripts: a JSON body and no Origin; or our own Origin.
        assert c.post("/api/config/validate", json={"overrides": []}).status_code == 200
        r = c.post("/api/config/validate", json={"overrides": []}, headers=origin)
        assert r.status_code == 200
        # DNS rebinding: a loopback server only answers to loopback host names.
        assert c.get("/api/health", headers={"Host": "evil.example"}).status_code == 421


def test_token(make_server: Callable[..., UIServer]) -> None:
    server = make_server(token="s3cret-token")
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        for path in ("/", "/api/health", "/api/runs", "/docs", "/metrics", "/static/app.js"):
            assert anon.get(path).status_code == 401, path
        assert anon.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert anon.get("/api/health", params={"token": "wrong"}).status_code == 401
        ok = anon.get("/api/health", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert anon.get("/api/health", params={"token": "s3cret-token"}).status_code == 200
        r = anon.get("/", params={"token": "s3cret-token"})
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert anon.cookies.get("ocrtrain_token") == "s3cret-token"
        assert anon.get("/").status_code == 200
        assert anon.get("/api/runs").status_code == 200


def test_generated_token_on_loopback_too(make_server: Callable[..., UIServer]) -> None:
    """Like Jupyter: a new token each start, saved 0600 under the home, printed only as the
    ready-to-open URL, never in the server's argv."""
    server = make_server(auth="generated")
    saved = server.home / "ui-token"
    assert saved.stat().st_mode & 0o777 == 0o600
    token = saved.read_text().strip()
    assert token == server.token and len(token) >= 32
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get("/api/health").status_code == 401
        r = anon.get("/api/health", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["token_required"] is True
    log = server.log()
    assert f"http://127.0.0.1:{server.port}/?token={token}" in log
    assert log.count(token) == 1, log
    assert token.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()


def test_token_file_is_not_echoed(make_server: Callable[..., UIServer]) -> None:
    server = make_server(host="0.0.0.0")
    assert server.token and server.token not in server.log()
    assert server.token.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
    with server.client() as c:
        assert c.get("/api/health").json()["token_required"] is True


def test_no_token_warns_loudly(make_server: Callable[..., UIServer]) -> None:
    server = make_server(auth="none")
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get("/api/health").json()["token_required"] is False
    assert "WARNING: --no-token" in server.log() and "every local user" in server.log()


def test_ui_restart_keeps_runs_controllable(make_server: Callable[..., UIServer]) -> None:
    first = make_server()
    with first.client() as c:
        run_id = launch(c, LONG)
        wait_state(c, run_id, {"running"})
    pids = wait_for(lambda: len(p := run_pids(run_id)) >= 2 and p, 20, "trainer and worker")
    first.kill()
    assert all(pid_alive(p) for p in pids), "killing the UI must not touch the run"
    second = make_server()
    with second.client() as c:
        runs = c.get("/api/runs").json()["runs"]
        assert [(r["id"], r["state"]) for r in runs] == [(run_id, "running")]
        assert c.post(f"/api/runs/{run_id}/stop", json={"force": False}).status_code == 202
        assert wait_state(c, run_id, {"stopped"}) == "stopped"
    wait_for(lambda: not run_pids(run_id), 20, "the run's processes to end")


def test_cli_usage_errors() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ocrtrain", "ui", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "--port" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "ocrtrain", "ui", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and "--token-file" in r.stdout and "--no-token" in r.stdout
    assert FAKE_CONFIGS.is_dir()
    for argv, word in (
        (["--no-token", "--host", "0.0.0.0"], "loopback only"),
        (["--token-file", "/nonexistent/token"], "--token-file"),
        (["--max-runs", "0"], "--max-runs"),
        (["--token", "visible-in-ps"], "--token"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "ocrtrain", "ui", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 2 and word in r.stderr, (argv, r.stderr)


def test_sigterm_with_open_log_stream(make_server: Callable[..., UIServer]) -> None:
    """Ctrl+C on `ocrtrain ui` returns promptly even while a browser follows a log, and the run
    goes on (it can then be stopped without any UI)."""
    server = make_server()
    with server.client() as c:
        run_id = launch(c, LONG)
        wait_state(c, run_id, {"running"})
        with c.stream("GET", f"/api/runs/{run_id}/logs") as resp:
            read_sse(resp, lambda ev: len(lines_of(ev)) >= 3)
            started = time.monotonic()
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=15)
            assert time.monotonic() - started < 10
    assert run_pids(run_id), "stopping the UI must not stop the run"
    with Journal() as journal:
        request_stop(journal, journal.resolve(run_id), source="test")
        wait_for(lambda: journal.resolve(run_id).state == "stopped", 30, "the run to stop")
    wait_for(lambda: not run_pids(run_id), 20, "the run's processes to end")


def test_form_speaks_to_a_newcomer(make_server: Callable[..., UIServer]) -> None:
    """On the real configs: help from the YAML comments, what `${...}` resolves to, closed
    choices as lists (and checked before launch), the callbacks group (the time budget)."""
    from web_helpers import REAL_CONFIGS, REAL_TRAINER

    server = make_server(config_dir=REAL_CONFIGS, train_script=REAL_TRAINER)
    with server.client() as c:
        schema = c.get("/api/config/schema").json()
        fields = {f["key"]: f for s in schema["sections"] for f in s["fields"]}
        assert {"callbacks", "logger"} <= {s["name"] for s in schema["sections"]}
        budget = fields["callbacks.time_budget.seconds"]
        assert budget["default"] == 480 and "seconds" in budget["help"]
        assert "epochs" in fields["trainer.max_epochs"]["help"]
        assert fields["torch_threads"]["default"] == "${ocr.cpus_minus:1}"
        assert int(fields["torch_threads"]["resolved"]) >= 1
        assert fields["trainer.precision"]["default"] == "auto"
        assert fields["model.optimizer"]["choices"] == ["adamw", "muon"]
        r = c.post("/api/config/validate", json={"overrides": ["model.optimizer=sgd"]})
        assert r.status_code == 422 and "must be one of adamw, muon" in r.json()["detail"]


def test_resource_samples_show_each_rank(server: UIServer) -> None:
    """The supervisor samples a rank of a distributed job on its own (its place, CPU, RSS,
    TCP bytes), beside the run's totals."""

    def rank_samples(c: httpx.Client, run_id: str) -> list[dict[str, Any]] | None:
        ranks = c.get(f"/api/runs/{run_id}/resources").json()["ranks"]
        done = ranks and any((s["net_sent_mib"] or 0) > 0 for s in ranks[0]["samples"])
        return ranks if done else None

    with rank_run() as run_id, server.client() as c:
        ranks = wait_for(lambda: rank_samples(c, run_id), 40, "a sample of the rank's traffic")
        assert [(r["global_rank"], r["local_rank"], r["node_rank"]) for r in ranks] == [(3, 1, 1)]
        last = ranks[0]["samples"][-1]
        assert last["processes"] == 1 and last["rss_mib"] > 0 and last["step"] is None
        assert round(last["net_sent_mib"] * 2**20) in range(1000, 1010)  # 1000 B, and the SYN


def test_prometheus_labels_each_rank(server: UIServer) -> None:
    """A rank of a distributed job (a process with torchrun's variables) is exported with job,
    node and rank labels, so one Prometheus can scrape every node of a cluster."""
    with rank_run() as run_id, server.client() as c:
        labels = (
            rf'\{{global_rank="3",job="{run_id}",local_rank="1",node_rank="1",run="{run_id}"\}}'
        )
        sent = rf"ocrtrain_rank_net_sent_bytes{labels} 100\d"  # 1000 bytes, the SYN counts one
        wait_for(lambda: re.search(sent, c.get("/metrics").text), 30, "the rank's bytes")
        text = c.get("/metrics").text
        assert re.search(rf"ocrtrain_rank_rss_bytes{labels} [0-9.e+]+", text), text
        assert "# TYPE ocrtrain_nic_sent_bytes gauge" in text
