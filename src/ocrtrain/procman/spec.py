"""What a run is asked to be: `RunSpec`, and the parsing of its user-given values."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ocrtrain.procman.errors import UsageError

DEFAULT_GRACE_S = 5.0
DEFAULT_SAMPLE_S = 5.0

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_seconds(text: str | float, what: str = "grace") -> float:
    """A non-negative, finite number of seconds ('5', '2.5', '90s', '10m', '1h').

    Raises:
        UsageError: anything else, naming `what`.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([smhd]?)\s*", text)
        if not m:
            raise UsageError(
                f"--{what} must be a number of seconds (e.g. 5, 2.5, 10m), got {text!r}"
            )
        value = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--{what} must be a non-negative number of seconds, got {text!r}")
    return value


def parse_size(text: str | int, what: str = "max-memory") -> int:
    """A positive byte count ('512M', '8G', '1073741824').

    Raises:
        UsageError: anything else, naming `what`.
    """
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
        if not m:
            raise UsageError(f"--{what} must be a size such as 512M or 8G, got {text!r}")
        value = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    if value <= 0:
        raise UsageError(f"--{what} must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start a supervised run.

    Attributes:
        argv: the command and its arguments, executed directly (never through a shell).
        name: a label for humans and for `ocrtrain stop NAME` (default: the program's name).
        grace: seconds between SIGTERM and SIGKILL when the run is torn down.
        cwd: working directory of the command (default: the caller's).
        env: extra environment variables for the command.
        detach: run in the background, owned by nothing but the supervisor.
        max_memory: stop the run gracefully once its processes' RSS exceeds this (bytes).
        timeout: stop the run gracefully after this many seconds.
        max_runs: refuse (or, with `wait_for_slot`, wait) while this many runs are active.
        sample_interval: seconds between resource samples written to the journal.
    """

    argv: tuple[str, ...]
    name: str | None = None
    grace: float = DEFAULT_GRACE_S
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    detach: bool = False
    max_memory: int | None = None
    timeout: float | None = None
    max_runs: int | None = None
    wait_for_slot: bool = False
    sample_interval: float = DEFAULT_SAMPLE_S

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise UsageError("no command given: use 'ocrtrain run [OPTIONS] -- CMD [ARG...]'")
        parse_seconds(self.grace, "grace")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be positive, got {self.timeout}")
        if self.max_runs is not None and self.max_runs < 1:
            raise UsageError(f"--max-runs must be at least 1, got {self.max_runs}")
        if self.sample_interval <= 0:
            raise UsageError("the sample interval must be positive")

    @property
    def display_name(self) -> str:
        """The name, else the program (for Python: the script or `-m` module)."""
        if self.name:
            return self.name
        prog = self.argv[0].rsplit("/", 1)[-1]
        if prog.startswith("python"):
            args = list(self.argv[1:])
            for i, arg in enumerate(args):
                if arg == "-m" and i + 1 < len(args):
                    return args[i + 1]
                if arg == "-c" or arg.startswith("-c"):
                    return prog
                if not arg.startswith("-"):
                    return arg.rsplit("/", 1)[-1]
        return prog

    def limits(self) -> dict[str, Any]:
        """The limits as stored in the journal."""
        out: dict[str, Any] = {}
        if self.max_memory is not None:
            out["max_memory"] = self.max_memory
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.max_runs is not None:
            out["max_runs"] = self.max_runs
        return out
