"""Requests from another pdtui process (`pdtui down`, `pdtui restart`) to the live owner
of a run (a foreground `pdtui up` or the TUI): files in `<run>/control/`.

The owner handles each `<id>.request.json` on its monitor thread and answers with
`<id>.done.json` ({"ok": bool, "message": str}). Files, not sockets: nothing to listen on,
and they work for any owner process that shares the filesystem.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from pdtui.model.files import atomic_write

CONTROL_DIR = "control"
ACTIONS = ("stop", "restart", "restart_pair")


def submit(run_dir: str | Path, action: str, **args) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown control action {action!r}; valid: {', '.join(ACTIONS)}")
    request_id = uuid.uuid4().hex
    path = Path(run_dir) / CONTROL_DIR / f"{request_id}.request.json"
    atomic_write(path, json.dumps({"action": action, "args": args, "time": time.time()}))
    return request_id


def wait_done(run_dir: str | Path, request_id: str, timeout_s: float, still_owned=lambda: True) -> dict:
    """The owner's answer; {"ok": False, "message": ...} on timeout or when the owner died."""
    done = Path(run_dir) / CONTROL_DIR / f"{request_id}.done.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done.exists():
            try:
                answer = json.loads(done.read_text())
            except (OSError, json.JSONDecodeError):
                time.sleep(0.05)
                continue
            try:
                done.unlink()
            except OSError:
                pass
            return answer
        if not still_owned():
            return {"ok": False, "message": "the owning pdtui process exited before answering"}
        time.sleep(0.1)
    return {"ok": False, "message": f"no answer from the owning pdtui process within {timeout_s:.0f} s"}


def pending(run_dir: str | Path) -> list[tuple[str, dict]]:
    """(request id, request) of the requests not yet taken; taking removes them."""
    directory = Path(run_dir) / CONTROL_DIR
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".request.json"))
    except FileNotFoundError:
        return []
    taken = []
    for name in names:
        path = directory / name
        try:
            request = json.loads(path.read_text())
            path.unlink()
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(request, dict):
            taken.append((name.split(".", 1)[0], request))
    return taken


def answer(run_dir: str | Path, request_id: str, ok: bool, message: str) -> None:
    atomic_write(Path(run_dir) / CONTROL_DIR / f"{request_id}.done.json", json.dumps({"ok": ok, "message": message}))
