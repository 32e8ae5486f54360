"""Help text for the form's fields, taken from the comments of the config files: the comment
lines right above a key and the comment at the end of its line (`lr: 0.006  # peak ...`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

KEY_RE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<rest>.*)$")
TRAILING_RE = re.compile(r"\s#\s?(?P<text>.*)$")
GLOBAL_PACKAGE = "# @package _global_"


def file_help(path: Path, prefix: str) -> dict[str, str]:
    """Dotted key -> its comments, for one YAML file whose keys live under `prefix`."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    if lines and lines[0].strip() == GLOBAL_PACKAGE:
        prefix = ""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    pending: list[str] = []  # the comment block just above
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        m = KEY_RE.match(line)
        if not m:
            pending = []
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parts = [prefix] if prefix else []
        key = ".".join([*parts, *(k for _, k in stack), m["key"]])
        rest = m["rest"]
        trailing = TRAILING_RE.search(rest) if "'" not in rest and '"' not in rest else None
        text = " ".join([*pending, trailing["text"].strip() if trailing else ""]).strip()
        if text and not m["key"].startswith("_"):
            out[key] = text
        pending = []
        value = TRAILING_RE.sub("", rest).strip() if trailing else rest.strip()
        if not value:  # a nested mapping follows
            stack.append((indent, m["key"]))
    return out


def config_help(config_dir: Path, choices: Mapping[str, str | None]) -> dict[str, str]:
    """Help for every key of `train.yaml` and of the chosen group configs (the first file to
    explain a key wins: the base config before presets)."""
    out = file_help(config_dir / "train.yaml", "")
    for group, choice in choices.items():
        if not choice or "/" in group:
            continue
        for key, text in file_help(config_dir / group / f"{choice}.yaml", group).items():
            out.setdefault(key, text)
    return out
