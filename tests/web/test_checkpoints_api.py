"""/api/runs/{id}/checkpoints against a real `ocrtrain ui` server and real supervised smoke
runs of the trainer: each run keeps its own checkpoints, which list, download and read."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from test_api import launch, wait_state
from web_helpers import REAL_CONFIGS, REAL_TRAINER, UIServer, run_pids, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SMOKE = ["debug=smoke", "trainer.max_epochs=1", "test_after_fit=false"]


def line_png() -> bytes:
    img = Image.new("L", (160, 32), 255)
    ImageDraw.Draw(img).text((4, 8), "TOTAL 12.50", fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_two_runs_keep_their_own_checkpoints(
    make_server: Callable[..., UIServer], tmp_path: Path
) -> None:
    server = make_server(config_dir=REAL_CONFIGS, train_script=REAL_TRAINER, grace=30.0)
    outputs = server.workdir / "outputs"  # the UI writes under its own outputs root only
    with server.client() as c:
        ids = [
            launch(c, [*SMOKE, f"paths.outputs_root={outputs}", f"seed={seed}"]) for seed in (1, 2)
        ]
        for run_id in ids:
            state = wait_state(c, run_id, {"succeeded", "failed", "stopped"}, timeout=400)
            assert state == "succeeded", c.get(f"/api/runs/{run_id}").text
        listed = [c.get(f"/api/runs/{run_id}/checkpoints").json() for run_id in ids]
        folders = {doc["folder"] for doc in listed}
        assert len(folders) == 2, listed  # one folder per run, never shared
        for doc in listed:
            names = [ck["name"] for ck in doc["checkpoints"]]
            assert names == ["best.ckpt", "last.ckpt"], doc
            best = doc["checkpoints"][0]
            # a smoke model reads little yet (its CER can exceed 1 with insertions)
            assert best["monitor"] == "val/cer" and 0.0 <= best["score"] < float("inf"), best
            assert best["step"] == 4 and best["size"] > 1000
            assert Path(best["path"]).is_file()

        # What the model read at its validation: the fixed sample, worst first, with images.
        doc = c.get(f"/api/runs/{ids[0]}/samples").json()
        assert doc["steps"] == [4] and doc["step"] == 4 and len(doc["lines"]) == 12, doc
        cers = [line["cer"] for line in doc["lines"]]
        assert cers == sorted(cers, reverse=True)
        assert all(line["truth"] and isinstance(line["reading"], str) for line in doc["lines"])
        img = c.get(doc["lines"][0]["image"])
        assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
        assert c.get(f"/api/runs/{ids[0]}/samples", params={"step": 3}).status_code == 404
        assert c.get(f"/api/runs/{ids[0]}/samples/4/../../config.yaml").status_code == 404
        assert c.get(f"/api/runs/{ids[0]}/samples/4/x.json").status_code == 404

        # Download: the very file, named after the run.
        run_id, best = ids[0], listed[0]["checkpoints"][0]
        r = c.get(f"/api/runs/{run_id}/checkpoints/best.ckpt")
        assert r.status_code == 200
        assert r.content == Path(best["path"]).read_bytes()
        assert f"{run_id}-best.ckpt" in r.headers["content-disposition"]

        # Read an image: the text the checkpoint reads (a smoke model reads little or nothing).
        # A raw image body is not JSON: it takes the page's CSRF header.
        c.get("/")
        csrf = {"X-Ocrtrain-CSRF": c.cookies["ocrtrain_csrf"]}
        r = c.post(
            f"/api/runs/{run_id}/checkpoints/best.ckpt/read",
            content=line_png(),
            headers={"Content-Type": "image/png", **csrf},
        )
        assert r.status_code == 200, r.text
        assert isinstance(r.json()["text"], str)
        bad = c.post(
            f"/api/runs/{run_id}/checkpoints/best.ckpt/read",
            content=b"not an image",
            headers={"Content-Type": "image/png", **csrf},
        )
        assert bad.status_code == 422 and bad.json()["detail"], bad.text
        wrong = c.post(
            f"/api/runs/{run_id}/checkpoints/best.ckpt/read",
            content=b"x",
            headers={"Content-Type": "text/csv", **csrf},
        )
        assert wrong.status_code == 415

        # Evaluate: a supervised run of `ocrtrain eval`, its scores the last line of its log.
        r = c.post(f"/api/runs/{run_id}/checkpoints/best.ckpt/evaluate", json={"synth": 8})
        assert r.status_code == 201, r.text
        eval_id = r.json()["id"]
        ids.append(eval_id)
        assert wait_state(c, eval_id, {"succeeded", "failed"}, timeout=300) == "succeeded"
        hits = c.get(f"/api/runs/{eval_id}/logs/search", params={"q": '"line_acc"'}).json()
        assert '"lines": 8' in hits["hits"][-1]["text"], hits
        for bad in ({}, {"synth": 8, "data": "/tmp"}, {"data": "/nonexistent"}, {"synth": 0}):
            r = c.post(f"/api/runs/{run_id}/checkpoints/best.ckpt/evaluate", json=bad)
            assert r.status_code == 422, (bad, r.text)

        for path in ("../config.yaml", "nope.ckpt", "..%2Fconfig.yaml"):
            assert c.get(f"/api/runs/{run_id}/checkpoints/{path}").status_code == 404
        assert c.get("/api/runs/no-such-run/checkpoints").status_code == 404
    for run_id in ids:
        wait_for(lambda rid=run_id: not run_pids(rid), 30, "the run's processes to end")
