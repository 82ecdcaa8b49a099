"""How long the editor takes to show another section (instance), in a headless Textual app.

One switch = the section list's highlight moves, the form is re-bound to the new
instance (same widgets, new values), problems and preview are refreshed and the screen is
repainted. The clock runs from just before the switch until the next repaint has finished
(`pilot.pause()` waits for it). Target: < 100 ms.

Baselines in the same run: the way the editor worked before issue 13 -- throw the form
away and mount a new one for each switch (`rebuild`) -- and a repaint with no change at
all (`repaint`: what `pilot.pause()` itself costs on this machine), timed alternately with
`rebind` on the same profile, same terminal size.

    python benchmarks/editor_switch.py [--profile configs/xpyd.yaml] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def measure(profile: Path, rounds: int, mode: str) -> list[float]:
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.screens.editor import LAYOUTS, EditorScreen
    from pdtui.ui.widgets.profile_form import ProfileForm

    app = PdtuiApp(profile, demo=True, offer_reattach=False, start_feeds=False, keymap={})
    times: list[float] = []
    async with app.run_test(size=(100, 30)) as pilot:
        while app.document is None:
            await pilot.pause(0.05)
        await pilot.press("e")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, EditorScreen)
        sections = [(key, index) for key, index, _ in screen._sections()]
        for _ in range(rounds):
            for selection in sections[1:] + sections[:1]:
                started = time.perf_counter()
                if mode == "repaint":
                    screen.refresh()
                    await pilot.pause()
                    times.append(time.perf_counter() - started)
                    continue
                if mode == "rebuild":
                    # Before: a fresh form for every switch.
                    layout = "deployment" if selection[0] == "deployment" else selection[0][:-1]
                    old = screen._forms[layout]
                    new = ProfileForm(layout, LAYOUTS[layout])
                    await old.remove()
                    screen._forms[layout] = new
                    await screen.query_one("#form").mount(new)
                screen._switch(selection)
                await pilot.pause()
                times.append(time.perf_counter() - started)
        assert not app.document.dirty
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=str(REPO / "configs" / "xpyd.yaml"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pdtui-bench-")
    os.environ.update(PDTUI_CONFIG_DIR=f"{home}/config", XDG_STATE_HOME=f"{home}/state")
    results: dict[str, list[float]] = {"rebind": [], "rebuild": [], "repaint": []}
    for _ in range(2):  # alternate, so that a busy moment hits all
        for name in results:
            results[name] += asyncio.run(measure(Path(args.profile), args.rounds, name))
    print(f"profile: {args.profile}; {len(results['rebind'])} switches each")
    for name, times in results.items():
        ms = sorted(t * 1000 for t in times)
        p90 = ms[int(len(ms) * 0.9) - 1]
        print(f"{name:8s} median {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms   max {ms[-1]:6.1f} ms")
    print("target: rebind median < 100 ms")


if __name__ == "__main__":
    main()
