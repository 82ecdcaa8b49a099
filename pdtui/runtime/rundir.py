"""Run directories: one per launch, under the XDG state directory.

`$XDG_STATE_HOME/pdtui/runs/<profile>-<YYYYmmdd-HHMMSS>/` (default `~/.local/state/...`).
Everything a later pdtui needs to find, verify and re-attach to a deployment is in there.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
STATE_FILE = "state.json"  # in each run directory (its typed contents: runstate.RunState)


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
