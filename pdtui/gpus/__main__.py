"""`python -m pdtui.gpus [--json] [--demo [N]] [--replay FILE]`: the same as `pdtui gpus`,
without importing the other layers (useful on a bare GPU box with only nvidia-ml-py)."""

from __future__ import annotations

import argparse
import sys

from pdtui.gpus.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdtui.gpus")
    subparsers = parser.add_subparsers(dest="command")
    register(subparsers)
    args = parser.parse_args(["gpus", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
