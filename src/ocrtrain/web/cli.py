"""Subcommands of this area (placeholder until it lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add this area's subcommands to the `ocrtrain` parser."""
    del subparsers


def _unused(args: argparse.Namespace) -> int:
    del args
    return 0
