"""The `ocrtrain` command's own options: its version, and help written for users."""

from __future__ import annotations

import subprocess
import sys

import ocrtrain


def _ocrtrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrtrain", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    out = _ocrtrain("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"ocrtrain {ocrtrain.__version__}"


def test_help_speaks_to_users() -> None:
    out = _ocrtrain("--help")
    assert out.returncode == 0, out.stderr
    assert "Train an OCR model" in out.stdout and "ocrtrain train debug=smoke" in out.stdout
    assert "argparse" not in out.stdout and "register" not in out.stdout
