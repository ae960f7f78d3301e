"""The ``anatomy-r1`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; heavy imports (torch,
transformers) happen inside the command functions so ``--help`` and data commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from anatomy_r1 import __version__
from anatomy_r1.errors import AnatomyR1Error

# Module names under anatomy_r1.cli; each registers one or more sub-commands.
COMMAND_MODULES = (
    "data",
    "score",
    "augment",
    "init",
    "train",
    "check",
    "eval",
    "probe",
    "demo",
    "experiment",
    "build_base",
)


def add_override_option(p: argparse.ArgumentParser, example: str) -> None:
    """The ``--set KEY=VALUE`` option of every command that reads a training config."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one config field, YAML-typed (repeatable): --set {example}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anatomy-r1",
        description="Anatomy reasoning for multimodal LLMs with GRPO, ASCL and GDQA.",
    )
    parser.add_argument("--version", action="version", version=f"anatomy-r1 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"anatomy_r1.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"anatomy_r1.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except AnatomyR1Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
