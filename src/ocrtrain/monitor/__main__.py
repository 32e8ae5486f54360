"""`python -m ocrtrain.monitor ps|cleanup ...`: the monitor alone, without loading the other
command modules of `ocrtrain` (the leanest start, used by bench/ps_bench.py)."""

from __future__ import annotations

import sys

from ocrtrain.procman import OcrtrainError, UsageError


def main(argv: list[str] | None = None) -> int:
    import argparse
    import logging

    from ocrtrain.monitor import cli

    parser = argparse.ArgumentParser(prog="python -m ocrtrain.monitor")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except OcrtrainError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
