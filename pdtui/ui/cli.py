"""`pdtui` with no subcommand (the TUI) and `pdtui info`.

Standard library only at import time (docs/interfaces.md): textual is imported inside
`run_tui`, so `pdtui --help` and the headless commands never load it.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print where pdtui keeps its config, keys, themes, profiles and runs",
        description="Print every path pdtui reads or writes (like `k9s info`).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run_info)


def info_paths() -> dict[str, str]:
    from pdtui.model.presets import presets_dir
    from pdtui.ui import paths

    shipped_themes = paths.shipped_themes_dir()
    presets = presets_dir()
    return {
        "config dir": str(paths.config_dir()),
        "settings file": str(paths.config_file()),
        "keys file": str(paths.keys_file()),
        "user themes": str(paths.user_themes_dir()),
        "shipped themes": str(shipped_themes) if shipped_themes else "(not found)",
        "user profiles": str(paths.user_profiles_dir()),
        "shipped profiles": str(presets) if presets else "(not found)",
        "runs": str(paths.runs_dir()),
    }


def run_info(args: argparse.Namespace) -> int:
    found = info_paths()
    if getattr(args, "json", False):
        json.dump(found, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    width = max(len(k) for k in found)
    for key, value in found.items():
        print(f"{key:<{width}}  {value}")
    return 0


def run_tui(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pdtui.model.presets import resolve_profile_path

    profile = getattr(args, "profile", None)
    demo = bool(getattr(args, "demo", False))
    profile_path: Path | None = None
    if profile:
        profile_path = resolve_profile_path(profile)
        if not profile_path.is_file():
            print(f"pdtui: profile {profile!r} not found (a file path, or a preset: see `pdtui info`)", file=sys.stderr)
            return 2
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print("pdtui: the control panel needs a terminal (for scripts use `pdtui up/down/status`)", file=sys.stderr)
        return 2
    from pdtui.ui.app import PdtuiApp

    app = PdtuiApp(profile_path, demo=demo)
    app.run()
    return int(app.return_code or 0)
