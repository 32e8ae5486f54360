"""The closed sets of values some config keys take: one list, read by the trainer (which
refuses anything else) and by the web form (which offers them as dropdowns and checks them
before a launch). Standard library only, so the web UI reads it without torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEDULERS = ("onecycle", "constant")
OPTIMIZERS = ("adamw", "muon")

CHOICES: dict[str, tuple[str, ...]] = {
    "model.optimizer": OPTIMIZERS,
    "model.scheduler": SCHEDULERS,
    "progress": ("auto", "bar", "plain"),
}


def choice_problem(config: Mapping[str, Any]) -> str | None:
    """One line naming the first key of `config` (a plain nested mapping) whose value is not
    one of its choices, or None."""
    for key, allowed in CHOICES.items():
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None and str(node) not in allowed:
            return f"{key} must be one of {', '.join(allowed)}, not {node!r}"
    return None
