"""Entry point: `pdtui` (the TUI) and its headless subcommands.

Each layer owns its subcommands in `pdtui/<layer>/cli.py`, which exposes
`register(subparsers)`. Those modules import only argparse-level things at
import time so that `pdtui --help` stays fast and never pulls in textual.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from pdtui.clipaths import expand_user

# Layers that contribute subcommands, in the order they appear in --help.
_COMMAND_MODULES = (
    "pdtui.model.cli",  # validate, render
    "pdtui.gpus.cli",  # gpus
    "pdtui.deploy.cli",  # up, down, status, logs, restart (local or Slurm)
    "pdtui.proxy.cli",  # proxy
    "pdtui.telemetry.cli",  # logscan
    "pdtui.sim.cli",  # sim-engine
    "pdtui.ui.cli",  # tui (default), info
)
# Which of those modules registers each subcommand: `pdtui up` builds only its own layer's
# parsers (all seven cost `up` ~10 ms before its first spawn). tests/test_cli_top.py checks
# this against what the modules register.
_COMMAND_OWNERS = {
    "validate": "pdtui.model.cli",
    "render": "pdtui.model.cli",
    "gpus": "pdtui.gpus.cli",
    "up": "pdtui.deploy.cli",
    "down": "pdtui.deploy.cli",
    "status": "pdtui.deploy.cli",
    "logs": "pdtui.deploy.cli",
    "restart": "pdtui.deploy.cli",
    "proxy": "pdtui.proxy.cli",
    "logscan": "pdtui.telemetry.cli",
    "sim-engine": "pdtui.sim.cli",
    "info": "pdtui.ui.cli",
}


def build_parser(commands: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; without `commands`, only the TUI's top-level options (what
    `pdtui --demo` needs: the seven layers' subcommand modules cost its first frame ~4 ms);
    with `only` (a module of _COMMAND_MODULES), only that module's subcommands."""
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
    parser.add_argument("--tour", action="store_true",
                        help="with --demo: the demo walks its screens on its own (launch, KV transfer, a fault and its "
                             "recovery, playground), one caption a step; any key takes over")
    parser.add_argument("--tour-pace", metavar="SECONDS", type=_seconds,
                        help="seconds each tour step stays on screen (default 4; or PDTUI_TOUR_PACE)")
    if not commands:
        return parser
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES if only is None else (only,):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # layer not built yet
        module.register(subparsers)
    _describe_subcommands(subparsers)
    return parser


def _describe_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """`pdtui SUB --help` opens with a sentence even where a layer gave only the one-line
    help: that line (capitalised) becomes the description."""
    helps = {action.dest: action.help for action in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        text = helps.get(name)
        if not sub.description and text:
            sub.description = text[:1].upper() + text[1:] + "."


def unknown_command(word: str, commands: set[str]) -> str | None:
    """The message for a first word that is neither a subcommand nor a profile but reads
    like a mistyped subcommand (`pdtui stauts`) or preset (`pdtui dmeo`); None when it
    should open as a profile.

    A path that exists, anything that looks like a path or a YAML file, and the name of a
    shipped preset (`pdtui demo`) always open as a profile."""
    if "/" in word or word.endswith((".yaml", ".yml")) or expand_user(word).exists():
        return None
    from pdtui.model.presets import list_presets

    presets = {path.stem for path in list_presets()}
    if word in presets:
        return None
    match = difflib.get_close_matches(word, sorted(commands | presets), n=1, cutoff=0.6)
    if not match:
        return None  # a missing file: the profile path reports it
    if match[0] in presets:
        return f"pdtui: profile {word!r} not found — did you mean the preset {match[0]!r}? (`pdtui info` lists them)"
    return f"pdtui: unknown command {word!r} — did you mean {match[0]!r}? (see `pdtui --help`)"


def _subcommand_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _seconds(text: str) -> float:
    from pdtui.ui.cli import seconds

    return seconds(text)


def _version() -> str:
    from pdtui import __version__

    return f"pdtui {__version__}"


# Top-level options that take a value: the word after them is not a command or a profile.
_OPTIONS_WITH_VALUE = ("-p", "--profile", "--attach", "--tour-pace")


def _first_word(argv: list[str]) -> int | None:
    """Where the first word that is neither an option nor an option's value stands."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            return None
        if word in _OPTIONS_WITH_VALUE:
            index += 2
            continue
        if not word.startswith("-"):
            return index
        index += 1
    return None


def _exit_at_once(code: int) -> None:
    """End the process now, without finalising the interpreter: a command that set
    `args.exit_at_once` (`up --detach`, once the run is left to its keeper) has nothing
    left to clean up, and tearing down the modules and the supervisor's threads took
    30-120 ms after its answer was printed, on the critical path of whoever waits for it."""
    import logging
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None  # a caller in Python (the tests) gets a return, always
    argv = list(sys.argv[1:] if argv is None else argv)
    first = _first_word(argv)
    tui_options_only = first is None and not {"-h", "--help", "--version", "--"} & set(argv)
    # A known subcommand (and no top-level --help/--version before it): its layer alone.
    owner = None
    if first is not None and not {"-h", "--help", "--version"} & set(argv[:first]):
        owner = _COMMAND_OWNERS.get(argv[first])
    parser = build_parser(commands=not tui_options_only, only=owner)
    commands = _subcommand_names(parser)
    if first is not None and argv[first] not in commands:
        problem = unknown_command(argv[first], commands)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        # `pdtui my.yaml` (and `pdtui --demo my.yaml`) opens it in the TUI
        argv = [*argv[:first], "--profile", *argv[first:]]
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
        code = int(func(args) or 0)
        if getattr(args, "exit_at_once", False) and from_command_line:
            _exit_at_once(code)
        return code
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
