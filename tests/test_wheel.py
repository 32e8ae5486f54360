"""A wheel install trains from any folder: build the wheel, install it into a fresh venv, run
`ocrtrain train debug=smoke` from an empty folder (its configs ship inside the package)."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_wheel_trains_from_an_empty_folder(tmp_path: Path, ocrtrain_home: Path) -> None:
    # Built from a copy of what the wheel is made of: the build leaves nothing in the checkout.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "configs"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("ocrtrain-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True)
    # Dependencies (torch, Lightning, ...) come from this venv's site-packages, appended after
    # the fresh venv's own: the wheel's ocrtrain is the one imported, never the checkout's.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OCRTRAIN_", "PYTHON", "VIRTUAL"))
    }
    env["OCRTRAIN_HOME"] = str(ocrtrain_home)
    where = subprocess.run(
        [str(python), "-c", "import ocrtrain; print(ocrtrain.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    out = subprocess.run(
        [str(venv / "bin" / "ocrtrain"), "train", "debug=smoke", "trainer.max_epochs=1"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (empty / "outputs" / "smoke" / "latest" / "checkpoints" / "best.ckpt").is_file()

    # The web UI of the wheel launches the packaged trainer (a wheel has no runners/).
    ui = subprocess.Popen(
        [str(venv / "bin" / "ocrtrain"), "ui", "--no-token", "--port", str(free_port())],
        cwd=empty,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = _wait_for_url(ui)
        wait_until(lambda: _answers(f"{url}api/health"), 60, "the UI to listen")
        launched = _post(f"{url}api/runs", {"overrides": ["debug=smoke", "trainer.max_epochs=1"]})
        assert launched["run"]["argv"][1:3] == ["-m", "ocrtrain.train"], launched
        run_id = launched["id"]

        def finished() -> dict[str, Any] | None:
            run = _get(f"{url}api/runs/{run_id}")["run"]
            return run if not run["active"] else None

        run = wait_until(finished, 300, "the UI's run to end")
        assert run["state"] == "succeeded", run
        assert run["overrides"] == ["debug=smoke", "trainer.max_epochs=1"]
    finally:
        ui.terminate()
        ui.wait(timeout=30)


def _wait_for_url(ui: subprocess.Popen[str]) -> str:
    assert ui.stdout is not None
    for line in ui.stdout:  # the server prints the URL to open once it listens
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if match:
            return match.group(1)
    raise AssertionError("the UI ended without printing its URL")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
