"""The `featurestore` command. Thin: every command calls the SDK and formats its answer.

    featurestore validate                       # every problem, located; exit 1 on an error
    featurestore frame spine.parquet 'user_daily_stats.*' --explain
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from featurestore.cli.parser import build_parser
from featurestore.cli.render import print_problems
from featurestore.errors import FeatureStoreError, InvalidProjectError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except InvalidProjectError as exc:
        print_problems(list(exc.problems), getattr(args, "format", "text"), _root(args))
        return 1
    except FeatureStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _root(args: argparse.Namespace) -> Path | None:
    try:
        from featurestore.config import find_root

        return find_root(getattr(args, "project", None))
    except FeatureStoreError:
        return None


if __name__ == "__main__":
    sys.exit(main())
