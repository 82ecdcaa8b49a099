"""Log flood: a writer process appends 20,000 lines/s to a log for 30 s while a headless
app with a LogPane follows it.

    python benchmarks/observe_log_flood.py [--seconds 30] [--rate 20000]

Reports: lines/s shown by the pane, lines read vs written (delayed = not yet read at the
end of the flood, lost = never read after a 10 s drain), peak RSS of this process (the
TUI), key-press latency during the flood (p50/p99/max, from sending the key to its
handler running), and whether the file on disk holds every line written.
Targets: key handled within 100 ms, RSS < 300 MB, no line lost from the file.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from textual.app import App, ComposeResult
from textual.binding import Binding

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pdtui.ui.observe.logpane import LogPane  # noqa: E402

LINE = ("[2025-06-02 17:53:48,108] LMCache INFO: Reqid: cmpl-{i:012d}-0, Total tokens 7501, "
        "LMCache hit tokens: 7500, need to load: 7499 (vllm_v1_adapter.py:1044:lmcache.v1)")


def writer(path: str, rate: int, seconds: float) -> int:
    """Write `rate` lines/s in 10 ms slices (as an engine would, through a file)."""
    written = 0
    t0 = time.perf_counter()
    with open(path, "a", encoding="utf-8", buffering=1 << 16) as fh:
        while True:
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
            due = int(rate * elapsed)
            if due > written:
                fh.write("".join(LINE.format(i=i) + "\n" for i in range(written, due)))
                fh.flush()
                written = due
            time.sleep(0.01)
    return written


class FloodApp(App):
    BINDINGS = [Binding("x", "probe", "probe")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.handled: list[float] = []

    def compose(self) -> ComposeResult:
        yield LogPane(self.path, title="flood")

    def action_probe(self) -> None:
        self.handled.append(time.perf_counter())


async def main(seconds: float, rate: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="pdtui-flood-"))
    path = tmp / "engine.log"
    path.write_text("")
    proc = psutil.Process()
    peak_rss = [proc.memory_info().rss]
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.1):
            peak_rss[0] = max(peak_rss[0], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    app = FloodApp(path)
    latencies: list[float] = []
    async with app.run_test(size=(160, 50), headless=True) as pilot:
        pane = app.query_one(LogPane)
        while not pane.follower.started:
            await pilot.pause(0.05)
        # The writer is its own process (as an engine is), so it does not share our GIL.
        t0 = time.perf_counter()
        w = subprocess.Popen([sys.executable, __file__, "--writer", str(path), "--seconds", str(seconds),
                              "--rate", str(rate)], stdout=subprocess.PIPE, text=True)
        try:
            while w.poll() is None:
                await asyncio.sleep(0.25)
                sent = time.perf_counter()
                before = len(app.handled)
                await pilot.press("x")
                while len(app.handled) == before:
                    await asyncio.sleep(0.001)
                latencies.append(app.handled[-1] - sent)
            flood_s = time.perf_counter() - t0
        finally:
            out, _ = w.communicate(timeout=30)
        written = int(out.strip())
        read_at_end = pane.follower.total_lines
        shown_at_end = pane.lines_shown
        drain_t0 = time.perf_counter()
        while pane.follower.total_lines < written and time.perf_counter() - drain_t0 < 10:
            await pilot.pause(0.05)
        drain_s = time.perf_counter() - drain_t0
        read_final = pane.follower.total_lines
        window = len(pane.shown_line_numbers())
        last_shown = pane.shown_line_numbers()[-1] if window else None
    stop_sampling.set()
    with open(path, "rb") as fh:
        on_disk = sum(1 for _ in fh)
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))] * 1000  # noqa: E731
    print(f"flood: {written} lines in {flood_s:.1f} s ({written / flood_s:,.0f} lines/s written)")
    print(f"lines read by the follower during the flood: {read_at_end} "
          f"(delayed at the end: {written - read_at_end}, caught up {drain_s:.2f} s later)")
    print(f"lines lost (never read): {max(0, written - read_final)}; file on disk has {on_disk} lines "
          f"({'all' if on_disk == written else 'MISSING ' + str(written - on_disk)})")
    print(f"lines written to the pane: {shown_at_end} ({shown_at_end / flood_s:,.0f} lines/s shown); "
          f"window {window} lines, last shown line #{last_shown}")
    print(f"key press latency during the flood ({len(lat)} presses): p50 {p(0.5):.1f} ms, "
          f"p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms")
    print(f"peak RSS: {peak_rss[0] / 2**20:.0f} MiB")
    ok = lat[-1] < 0.1 and peak_rss[0] < 300 * 2**20 and on_disk == written and read_final == written
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--writer", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        print(writer(args.writer, args.rate, args.seconds))
        sys.exit(0)
    sys.exit(asyncio.run(main(args.seconds, args.rate)))
