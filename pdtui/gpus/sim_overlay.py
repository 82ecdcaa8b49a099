"""What the simulated engines say they use: ``$PDTUI_SIM_GPU_DIR/<pid>.json``.

Each simulated engine (pdtui/sim) writes, atomically and at most every 0.5 s::

    {"pid": int, "name": str, "role": "prefiller|decoder|both", "port": int,
     "gpus": [int, ...], "memory_bytes": int (per GPU), "utilization": float (0..100),
     "updated": unix_time}

and removes it at exit. An engine killed with SIGKILL leaves its file behind, so a
file whose pid is gone or whose `updated` is older than `STALE_AFTER_S` is ignored.
Partial or garbage files (a writer bug, a stray file) are skipped, never fatal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

STALE_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class SimEngineUsage:
    pid: int
    name: str
    role: str
    gpus: tuple[int, ...]
    memory_bytes: int  # on each GPU in `gpus`
    utilization: float  # percent, 0..100
    updated: float


def read_sim_usage(
    directory: str | Path,
    *,
    now: float | None = None,
    stale_after_s: float = STALE_AFTER_S,
    pid_alive: Callable[[int], bool] | None = None,
    cache: dict[str, tuple[tuple[int, int, int], SimEngineUsage | None, str]] | None = None,
) -> tuple[list[SimEngineUsage], list[str]]:
    """The live engines' usage, and one note per file that was skipped (and why).
    `cache` (kept by a caller that polls): a file whose inode, size and mtime are as at the
    last read is not read again -- an idle engine rewrites its file every 2 s, the GPU view
    polls every second."""
    now = time.time() if now is None else now
    alive = pid_alive or _pid_alive
    usages: list[SimEngineUsage] = []
    skipped: list[str] = []
    try:
        with os.scandir(directory) as listing:
            entries = sorted((e for e in listing if e.name.endswith(".json")),
                             key=lambda e: e.name)
    except FileNotFoundError:  # no engine has written one yet
        return [], []
    except OSError as exc:
        return [], [f"{directory}: cannot list simulated GPU usage: {exc}"]
    seen: set[str] = set()
    for entry in entries:
        path = Path(entry.path)
        usage, problem = _read_cached(entry, cache) if cache is not None else _read_one(path)
        seen.add(entry.path)
        if usage is None:
            skipped.append(f"{path.name}: {problem}")
        elif now - usage.updated > stale_after_s:
            skipped.append(f"{path.name}: stale (updated {now - usage.updated:.0f}s ago)")
        elif not alive(usage.pid):
            skipped.append(f"{path.name}: pid {usage.pid} is gone")
        else:
            usages.append(usage)
    if cache is not None:
        for gone in [p for p in cache if p not in seen]:
            del cache[gone]
    return usages, skipped


def _read_cached(entry: os.DirEntry, cache: dict) -> tuple[SimEngineUsage | None, str]:
    try:
        st = entry.stat()
    except OSError:
        return _read_one(Path(entry.path))
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    known = cache.get(entry.path)
    if known is not None and known[0] == stamp:
        return known[1], known[2]
    usage, problem = _read_one(Path(entry.path))
    cache[entry.path] = (stamp, usage, problem)
    return usage, problem


def _read_one(path: Path) -> tuple[SimEngineUsage | None, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({exc.__class__.__name__})"
    except json.JSONDecodeError:
        return None, "not valid JSON (partly written?)"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    pid = data.get("pid")
    if not _is_int(pid) or pid <= 0:
        stem = path.stem
        if not stem.isdigit():
            return None, f"'pid' must be a positive integer, got {pid!r}"
        pid = int(stem)
    gpus = data.get("gpus")
    if not isinstance(gpus, list) or not all(_is_int(g) and g >= 0 for g in gpus):
        return None, f"'gpus' must be a list of GPU indices, got {gpus!r:.60}"
    memory = data.get("memory_bytes", 0)
    if not _is_int(memory) or memory < 0:
        return None, f"'memory_bytes' must be an integer >= 0, got {memory!r:.60}"
    utilization = data.get("utilization", 0.0)
    if not _is_number(utilization):
        return None, f"'utilization' must be a number 0..100, got {utilization!r:.60}"
    updated = data.get("updated")
    if not _is_number(updated):
        return None, f"'updated' must be a unix time, got {updated!r:.60}"
    return (
        SimEngineUsage(
            pid=pid,
            name=str(data.get("name", "")),
            role=str(data.get("role", "")),
            gpus=tuple(dict.fromkeys(gpus)),
            memory_bytes=memory,
            utilization=min(100.0, max(0.0, float(utilization))),
            updated=float(updated),
        ),
        "",
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, just someone else's
        return True
    except OSError:
        return False
    return True
