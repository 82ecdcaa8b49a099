"""Finding runs: the run directories with their (maybe unreadable) state, plus the runs
that exist only as live processes carrying a run marker (their directory was deleted)."""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from pathlib import Path

from pdtui.runtime.rundir import runs_root
from pdtui.runtime.runstate import STATE_FILE, StateFileError
from pdtui.runtime.statefile import live_owner_pid, read_state, run_is_live


@dataclass(frozen=True)
class RunInfo:
    path: Path
    name: str
    profile: str
    created: float
    live: bool  # a recorded process verified running, or a process carrying its marker
    detached: bool
    owner_pid: int | None  # a live pdtui process holding it (foreground `up` or the TUI)
    instances: dict  # name -> state as recorded, e.g. {"proxy": "ready", ...}
    problem: str | None = None  # why its state file could not be read ("unreadable: why")
    marked_pids: tuple[int, ...] = field(default=())  # live processes carrying its run marker
    dir_exists: bool = True


def find_runs(root: Path | None = None, live_only: bool = False, with_markers: bool = True) -> list[RunInfo]:
    """Run directories with a state file, newest first; a run whose state file cannot be
    read is listed with `problem` (never raises for one bad run). with_markers: also the
    runs known only from live marked processes (directory gone), and marker-found pids
    make a run with an unreadable state file count as live."""
    root = runs_root() if root is None else Path(root)
    marked: dict[str, list[int]] = {}
    if with_markers:
        from pdtui.gpus.markers import marked_runs

        marked = {run: [p.pid for p in procs] for run, procs in marked_runs(os.path.realpath(root)).items()}
    runs: list[RunInfo] = []
    seen: set[str] = set()
    entries = list(root.iterdir()) if root.is_dir() else []
    for path in entries:
        state_path = path / STATE_FILE
        if not state_path.is_file():
            continue
        seen.add(path.name)
        pids = tuple(marked.get(path.name, ()))
        try:
            state = read_state(path)
        except StateFileError as exc:
            if pids or not live_only:
                runs.append(RunInfo(path, path.name, "?", _mtime(state_path), bool(pids), False, None, {}, str(exc), pids))
            continue
        live = run_is_live(state) or bool(pids)
        if live_only and not live:
            continue
        runs.append(RunInfo(
            path=path, name=path.name, profile=state.profile, created=state.created, live=live,
            detached=state.detached, owner_pid=live_owner_pid(state),
            instances={n: rec.state for n, rec in state.instances.items()}, marked_pids=pids,
        ))
    for name, orphan_pids in marked.items():
        if name in seen:
            continue
        runs.append(RunInfo(root / name, name, "?", 0.0, True, False, None, {}, "run directory is gone",
                            tuple(orphan_pids), dir_exists=(root / name).is_dir()))
    runs.sort(key=lambda r: (r.created, r.name), reverse=True)
    return runs


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def resolve_run(name: str | None, root: Path | None = None) -> Path:
    """A run by name (or path); None = the only live run. Raises LookupError with a reason
    (also when several runs are live: acting on a guess could stop the wrong one)."""
    root = runs_root() if root is None else Path(root)
    if name:
        candidate = Path(name)
        if candidate.is_dir() and (candidate / STATE_FILE).exists():
            return candidate
        exact = root / name
        if (exact / STATE_FILE).exists():
            return exact
        runs = find_runs(root)
        if any(r.name == name for r in runs):
            return exact  # known only from its marked processes
        matches = [r for r in runs if r.name.startswith(name) or r.profile == name]
        live = [r for r in matches if r.live]
        if live:
            return live[0].path
        if matches:
            return matches[0].path
        raise LookupError(f"no run named {name!r} under {root}")
    live = find_runs(root, live_only=True)
    if not live:
        raise LookupError(f"no live run under {root}")
    if len(live) > 1:
        names = ", ".join(r.name for r in live)
        raise LookupError(f"{len(live)} live runs ({names}): name one, or use --all")
    return live[0].path
