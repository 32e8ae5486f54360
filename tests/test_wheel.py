"""A wheel install trains from any folder: build the wheel, install it into a fresh venv, run
`ocrtrain train debug=smoke` from an empty folder (its configs ship inside the package)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

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
