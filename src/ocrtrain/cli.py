"""The `ocrtrain` command: one argparse tree, each feature area registering its subcommands.

Feature modules only add parsers here; they import their heavy dependencies (torch, the web
stack) inside their handlers, so `ocrtrain run`, `stop` and `ps` start fast and keep working
when the training stack is broken.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from ocrtrain import __version__
from ocrtrain.procman.errors import OcrtrainError, UsageError

# Each module exposes `register(subparsers) -> None`; handlers are `func(args) -> int`.
COMMAND_MODULES = (
    "ocrtrain.runcli",
    "ocrtrain.train.cli",
    "ocrtrain.monitor.cli",
    "ocrtrain.web.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"ERROR: {self.prog}: {message}\n")


DESCRIPTION = (
    "Train an OCR model for text lines, and launch, watch, stop and clean up training runs: "
    "no process of a run outlives it."
)
EPILOG = (
    "Start with `ocrtrain train debug=smoke` (a seconds-long run), `ocrtrain ui` (the web UI) "
    "or `ocrtrain COMMAND --help`."
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ocrtrain", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ocrtrain {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def report_errors(handler: Callable[[], int]) -> int:
    """Run a CLI handler, turning ocrtrain errors into one `ERROR:` line (and a `HINT:`)."""
    try:
        return int(handler())
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except OcrtrainError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"HINT: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return report_errors(lambda: args.func(args))
