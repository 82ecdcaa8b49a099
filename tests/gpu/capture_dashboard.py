"""Capture pdtui's dashboard attached to a live run, for the acceptance record.

    python tests/gpu/capture_dashboard.py RUN_DIR PROFILE OUT_DIR [--seconds 12]

Two captures, whichever the box allows:
- tmux (when installed): the real TUI, `python -m pdtui PROFILE` in a detached tmux session
  of 160x48, `capture-pane` after a while -> dashboard-tmux.txt (plain) and .ansi (colours).
- Textual's headless driver (always): PdtuiApp attached to RUN_DIR without asking, after a
  while `save_screenshot` -> dashboard.svg. This goes through pdtui.ui's own app class; the
  script imports textual only via that package.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# first: vLLM's site folder ships its own top-level `tests` package
sys.path.insert(0, str(REPO))


class BackgroundLoad(threading.Thread):
    """Completions through the run's proxy, one after another, while the captures run: the
    cockpit is recorded with traffic going through it (issue 14)."""

    def __init__(self, run_dir: Path, model: str, sim: bool) -> None:
        super().__init__(daemon=True)
        from tests.gpu.acceptance import load_prompts

        plan = json.loads((run_dir / "plan.json").read_text())
        self.url = f"http://{plan['proxy']['host']}:{plan['proxy']['port']}"
        self.prompts = load_prompts(model, sim, 8)
        self.stop_event = threading.Event()
        self.sent = self.ok = 0

    def run(self) -> None:
        from tests.gpu import client

        served = client.get_json(self.url, "/v1/models")["data"][0]["id"]
        while not self.stop_event.is_set():
            prompt = self.prompts[self.sent % len(self.prompts)]
            res = client.send(self.url, self.sent, "completions", self.sent % 2 == 1, served, f"load {self.sent}: {prompt}", 16)
            self.sent += 1
            self.ok += int(res.ok)
            self.stop_event.wait(0.2)


def capture_tmux(profile: str, out: Path, seconds: float) -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        return "tmux not installed: no terminal capture"
    session = f"pdtui-capture-{os.getpid()}"
    cmd = f"cd {REPO} && {sys.executable} -m pdtui {profile}"
    subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True, timeout=20)
    try:
        time.sleep(seconds)
        # the TUI first offers to re-attach to the detached run: keep that screen, then accept
        first = subprocess.run([tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, timeout=20)
        (out / "dashboard-tmux-first.txt").write_text(first.stdout)
        if "Re-attach" in first.stdout:
            subprocess.run([tmux, "send-keys", "-t", session, "Enter"], timeout=20)
            time.sleep(seconds)
        plain = subprocess.run([tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, timeout=20)
        ansi = subprocess.run([tmux, "capture-pane", "-p", "-e", "-t", session], capture_output=True, text=True, timeout=20)
        (out / "dashboard-tmux.txt").write_text(plain.stdout)
        (out / "dashboard-tmux.ansi").write_text(ansi.stdout)
        return f"tmux capture: {len(plain.stdout.splitlines())} lines"
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], timeout=20)


async def capture_headless(run_dir: Path, profile: str, out: Path, seconds: float) -> str:
    from pdtui.ui.app import PdtuiApp

    app = PdtuiApp(Path(profile), attach_run=run_dir, offer_reattach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(seconds)
        app.save_screenshot(filename="dashboard.svg", path=str(out))
        # leave the run running: the acceptance script stops it with `pdtui down`
        if app.control.supervisor is not None:
            app.control.detach()
    return "headless capture: dashboard.svg"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("profile")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--load", action="store_true", help="send completions through the proxy while capturing")
    ap.add_argument("--model", default="", help="model directory with prompts.json (for --load)")
    ap.add_argument("--sim", action="store_true", help="simulated engines (made-up prompts for --load)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    load = None
    if a.load:
        load = BackgroundLoad(Path(a.run_dir), a.model, a.sim)
        load.start()
    for name, step in (("tmux", lambda: capture_tmux(a.profile, out, a.seconds)),
                       ("headless", lambda: asyncio.run(capture_headless(Path(a.run_dir), a.profile, out, a.seconds)))):
        try:
            notes.append(step())
        except Exception as exc:  # noqa: BLE001 - one capture failing must not lose the other
            notes.append(f"{name} capture failed: {type(exc).__name__}: {exc}")
    if load is not None:
        load.stop_event.set()
        load.join(timeout=60)
        notes.append(f"background load: {load.ok}/{load.sent} requests answered while capturing")
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
