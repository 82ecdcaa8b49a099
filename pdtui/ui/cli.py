"""`pdtui` with no subcommand (the TUI) and `pdtui info`.

Standard library only at import time (docs/interfaces.md): textual is imported inside
`run_tui`, so `pdtui --help` and the headless commands never load it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print where pdtui keeps its config, keys, themes, profiles, runs and cache",
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
        "cache": str(paths.cache_dir()),
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


def attach_target(name: str) -> tuple[Path | None, str | None]:
    """The run directory `pdtui --attach NAME` re-attaches to, or why it cannot.

    NAME is a run name (or its start, or a profile name) under the runs directory, or a
    run directory; the supervisor's own lookup decides (`pdtui.runtime.resolve_run`),
    so the TUI and `pdtui status/down NAME` always agree on which run a name means.
    A run counts as running when at least one of its recorded processes is verified
    alive (pid + create time + command line), as `find_runs` reports it.
    """
    from pdtui.deploy.deployment import cluster_attach_target

    cluster = cluster_attach_target(name)  # a Slurm run: its slurm.json, not the supervisor's state
    if cluster is not None:
        return cluster
    from pdtui.runtime import find_runs, resolve_run

    try:
        run_dir = resolve_run(name)
    except LookupError as exc:
        return None, f"pdtui: cannot attach: {exc} (`pdtui status` lists the runs)"
    run_dir = Path(run_dir)
    run = next((r for r in find_runs(run_dir.parent) if Path(r.path).resolve() == run_dir.resolve()), None)
    if run is None or run.problem:
        why = run.problem if run is not None else "its state file cannot be read"
        return None, f"pdtui: cannot attach to {run_dir}: {why}"
    if not run.live:
        states = ", ".join(f"{n} {s}" for n, s in run.instances.items()) or "no instances"
        return None, (
            f"pdtui: cannot attach to {run.name}: it is not running ({states}); "
            f"start it with `pdtui up {run.profile}` or open the profile in the TUI"
        )
    return run_dir, None


def run_is_simulated(run_dir: Path) -> bool:
    """Whether the run's engines are pdtui's simulator (its plan.json says `engine: sim`):
    then its GPUs are the simulated ones, whatever flags `pdtui --attach` was given."""
    try:
        return json.loads((Path(run_dir) / "plan.json").read_text(encoding="utf-8")).get("engine") == "sim"
    except (OSError, ValueError, AttributeError):
        return False


DEFAULT_TOUR_PACE_S = 4.0  # seconds a tour caption stays: long enough to read it aloud
TOUR_PACE_ENV = "PDTUI_TOUR_PACE"


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def tour_pace(flag: float | None) -> tuple[float, str | None]:
    """The tour's pause per step: `--tour-pace`, else PDTUI_TOUR_PACE, else the default;
    and the problem with the environment's value, if any."""
    import os

    if flag is not None:
        return flag, None
    raw = os.environ.get(TOUR_PACE_ENV, "").strip()
    if not raw:
        return DEFAULT_TOUR_PACE_S, None
    try:
        return seconds(raw), None
    except argparse.ArgumentTypeError as exc:
        return DEFAULT_TOUR_PACE_S, f"pdtui: {TOUR_PACE_ENV}: {exc}"


def run_tui(args: argparse.Namespace) -> int:
    from pdtui.model.presets import resolve_profile_path

    profile = getattr(args, "profile", None)
    demo = bool(getattr(args, "demo", False))
    attach = getattr(args, "attach", None)
    profile_path: Path | None = None
    if profile:
        profile_path = resolve_profile_path(profile)
        if not profile_path.is_file():
            print(f"pdtui: profile {profile!r} not found (a file path, or a preset: see `pdtui info`)", file=sys.stderr)
            return 2
    attach_run: Path | None = None
    if attach:
        attach_run, problem = attach_target(attach)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 1
        demo = demo or (attach_run is not None and run_is_simulated(attach_run))  # a demo run's GPUs are the simulated ones
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print("pdtui: the control panel needs a terminal (for scripts use `pdtui up/down/status`)", file=sys.stderr)
        return 2
    tour = bool(getattr(args, "tour", False))
    pace_s, pace_problem = tour_pace(getattr(args, "tour_pace", None))
    if tour and pace_problem:
        print(pace_problem, file=sys.stderr)
        return 2
    if tour and (attach_run is not None or (profile_path is not None and not demo)):
        print("pdtui: the tour launches and breaks its own simulated deployment: "
              "run `pdtui --demo --tour` (no --attach, no real profile)", file=sys.stderr)
        return 2
    from pdtui.ui import gc_pause

    gc_pause.pause()  # until the first screen is painted (pdtui.ui.startup resumes it)
    from pdtui.ui.app import PdtuiApp

    # With --attach the run is re-attached at start, and no other detached run is offered.
    app = PdtuiApp(profile_path, demo=demo or tour, attach_run=attach_run,
                   offer_reattach=attach_run is None and not tour)
    if tour:
        from pdtui.ui.tour import Tour

        Tour(app, pace_s=pace_s)  # the app starts it once mounted
    try:
        app.run()
    finally:
        gc_pause.resume()  # the app ended before its first screen
    if app.commands.exit_note:
        print(app.commands.exit_note)
    return int(app.return_code or 0)
