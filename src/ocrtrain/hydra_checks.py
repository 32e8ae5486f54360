"""Checks shared by everything that composes the training config (the trainer's command line
and the web UI's command builder), so both refuse the same overrides with the same words.

Hydra accepts `trainer.max_epochs=ten` when the default is an int only to fail much later;
here an overridden value must keep the type of its default, and Hydra's multi-line errors
become one line.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any


def is_hydra_setting(override: str) -> bool:
    """Whether an override changes Hydra's own settings (`hydra.*`, `hydra/...` groups): they
    steer Hydra's app runner, which ocrtrain does not use, so both callers refuse them."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def folder_name_problem(key: str, name: object) -> str | None:
    """Why `name` cannot name one folder under the outputs root (None: it can): a '/' or '..'
    would put a run's outputs elsewhere."""
    text = str(name)
    if "/" in text or "\\" in text or text in (".", ".."):
        return f"{key} {text!r} must be a plain folder name (no '/', no '..')"
    return None


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping to `{"a.b.c": value}`."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(leaves(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = node
    return out


def type_ok(old: Any, new: Any) -> bool:
    """Whether `new` may replace `old` (bools stay bools, ints ints, floats take ints too)."""
    if isinstance(old, bool):
        return isinstance(new, bool)
    if isinstance(old, int):
        return isinstance(new, int) and not isinstance(new, bool)
    if isinstance(old, float):
        return isinstance(new, int | float) and not isinstance(new, bool)
    return True


def type_mismatch(
    base: Any, cfg: Any, overrides: Sequence[str], groups: Collection[str]
) -> str | None:
    """The first override whose value changes the type of its default, as a message.

    Args:
        base: the config composed with only the group choices among `overrides`.
        cfg: the config composed with all `overrides`.
        overrides: Hydra overrides (`key=value`, `+key=value`, `group=option`).
        groups: config group names, whose overrides choose an option and are not checked.
    """
    from omegaconf import OmegaConf

    old = leaves(OmegaConf.to_container(base, resolve=False))
    new = leaves(OmegaConf.to_container(cfg, resolve=False))
    for ov in overrides:
        key = ov.lstrip("+~").split("=", 1)[0]
        if key in groups or key not in old or key not in new:
            continue
        before, after = old[key], new[key]
        if before is None or after is None or (isinstance(after, str) and "${" in after):
            continue
        if not type_ok(before, after):
            return (
                f"{key}: expected {type(before).__name__}, got {after!r} ({type(after).__name__})"
            )
    return None


def one_line(exc: BaseException) -> str:
    """A Hydra/OmegaConf error (and its cause) as one line of at most 500 characters."""
    msg = str(exc).strip()
    cause = exc.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in msg:
        msg = f"{msg}: {str(cause).strip()}"
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("object_type=", "Traceback", "See "))]
    return " ".join(keep or lines)[:500] or type(exc).__name__
