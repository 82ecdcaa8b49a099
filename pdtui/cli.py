"""Entry point: `pdtui` (the TUI) and its headless subcommands.

Each layer owns its subcommands in `pdtui/<layer>/cli.py`, which exposes
`register(subparsers)`. Those modules import only argparse-level things at
import time so that `pdtui --help` stays fast and never pulls in textual.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Layers that contribute subcommands, in the order they appear in --help.
_COMMAND_MODULES = (
    "pdtui.model.cli",  # validate, render
    "pdtui.gpus.cli",  # gpus
    "pdtui.runtime.cli",  # up, down, status, logs, restart
    "pdtui.proxy.cli",  # proxy
    "pdtui.telemetry.cli",  # logscan
    "pdtui.sim.cli",  # sim-engine
    "pdtui.ui.cli",  # tui (default), info
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdtui",
        description="Control panel for prefill/decode disaggregated serving with vLLM + LMCache.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the TUI on the built-in demo (simulated GPUs and engines)",
    )
    parser.add_argument("-p", "--profile", help="profile to open in the TUI (a file or a preset name); `pdtui FILE` works too")
    parser.add_argument("--attach", metavar="RUN", help="re-attach the TUI to a running deployment (a run name or directory)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # layer not built yet
        module.register(subparsers)
    return parser


def _subcommand_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _version() -> str:
    from pdtui import __version__

    return f"pdtui {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = _subcommand_names(parser)
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        argv = ["--profile", argv[0], *argv[1:]]  # `pdtui my.yaml` opens it in the TUI
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        # No subcommand: the TUI.
        try:
            from pdtui.ui.cli import run_tui
        except ModuleNotFoundError:
            parser.print_help()
            return 0
        return run_tui(args)
    from pdtui.clipaths import EXIT_PATH_ERROR, PathError, reason_of

    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except PathError as exc:
        print(f"pdtui {args.command}: {exc}", file=sys.stderr)
        return EXIT_PATH_ERROR
    except OSError as exc:
        if not exc.filename:
            raise
        # A path problem no command checked for: still one line, never a traceback.
        print(f"pdtui {args.command}: {exc.filename}: {reason_of(exc)}", file=sys.stderr)
        return EXIT_PATH_ERROR
