"""Run directories: one per launch, under the XDG state directory.

`$XDG_STATE_HOME/pdtui/runs/<profile>-<YYYYmmdd-HHMMSS>/` (default `~/.local/state/...`).
Everything a later pdtui needs to find, verify and re-attach to a deployment is in there.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "state.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def state_home() -> Path:
    env = os.environ.get("XDG_STATE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    if env and os.path.isabs(env):
        return Path(env)
    return Path.home() / ".local" / "state"


def runs_root() -> Path:
    return state_home() / "pdtui" / "runs"


def new_run_dir(profile_name: str, root: Path | None = None, now: float | None = None) -> Path:
    """Create and return a fresh run directory for profile_name (never reuses one)."""
    root = runs_root() if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    base = f"{_UNSAFE.sub('_', profile_name) or 'profile'}-{stamp}"
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}.{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue  # two launches of one profile in the same second
        os.chmod(path, 0o700)  # logs and state are the operator's alone, whatever the umask
        return path
    raise RuntimeError(f"cannot create a run directory under {root}")


@dataclass(frozen=True)
class RunInfo:
    path: Path
    name: str
    profile: str
    created: float
    live: bool  # at least one of its processes verified running (pid + create_time + cmdline)
    detached: bool
    owner_pid: int | None  # a live pdtui process holding it (foreground `up` or the TUI)
    instances: dict  # name -> state as recorded, e.g. {"proxy": "ready", ...}
    problem: str | None = None  # why its state file could not be read, if it could not


def find_runs(root: Path | None = None, live_only: bool = False) -> list[RunInfo]:
    """Run directories with a state file, newest first."""
    from pdtui.runtime.statefile import StateFileError, read_state, run_is_live, live_owner_pid

    root = runs_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    runs: list[RunInfo] = []
    for path in root.iterdir():
        state_path = path / STATE_FILE
        if not state_path.is_file():
            continue
        try:
            state = read_state(path)
        except StateFileError as exc:
            if not live_only:
                runs.append(RunInfo(path, path.name, "?", state_path.stat().st_mtime, False, False, None, {}, str(exc)))
            continue
        live = run_is_live(state)
        if live_only and not live:
            continue
        runs.append(
            RunInfo(
                path=path,
                name=path.name,
                profile=str(state.get("profile", "?")),
                created=float(state.get("created") or state_path.stat().st_mtime),
                live=live,
                detached=bool(state.get("detached")),
                owner_pid=live_owner_pid(state),
                instances={n: i.get("state") for n, i in (state.get("instances") or {}).items()},
            )
        )
    runs.sort(key=lambda r: (r.created, r.name), reverse=True)
    return runs


def resolve_run(name: str | None, root: Path | None = None) -> Path:
    """A run by name (or path); None = the newest live run. Raises LookupError with a reason."""
    if name:
        candidate = Path(name)
        if candidate.is_dir() and (candidate / STATE_FILE).exists():
            return candidate
        root = runs_root() if root is None else Path(root)
        exact = root / name
        if (exact / STATE_FILE).exists():
            return exact
        matches = [r for r in find_runs(root) if r.name.startswith(name) or r.profile == name]
        live = [r for r in matches if r.live]
        if live:
            return live[0].path
        if matches:
            return matches[0].path
        raise LookupError(f"no run named {name!r} under {root}")
    live = find_runs(root, live_only=True)
    if not live:
        raise LookupError(f"no live run under {runs_root() if root is None else root}")
    return live[0].path
