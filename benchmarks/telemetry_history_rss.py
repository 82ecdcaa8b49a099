"""RSS of the TUI holding one hour of history at 1 s (target: under 150 MiB).

Every series a 4-instance deployment (2 P + 2 D) with the proxy and 8 GPUs produces is
created the way the monitor creates it -- the deriver and the proxy stage tracker fed the
real H200 /metrics bodies of tests/fixtures/real-run/lmcache-pd, the pair series from the
monitor's own sample, the GPU series from the session -- and then each is filled with
3,600 points (one hour at 1 s; the ring keeps exactly that). The cockpit is then rendered
from that store in a headless Textual app, and the process's RSS read.

The baseline, in the same run, is the same child with an empty store (same imports, same
app, same screens): the difference is what the history costs.

    python benchmarks/telemetry_history_rss.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "real-run" / "lmcache-pd"
HOUR = 3600


def fill(store, now: float) -> int:
    """Create every series of the deployment, then an hour of points in each."""
    from pdtui.telemetry.derive import Deriver
    from pdtui.telemetry.metrics import parse_metrics
    from pdtui.telemetry.monitor import pair_key
    from pdtui.telemetry.stages import ProxyStageTracker

    deriver = Deriver(store)
    names = {"prefiller1": "prefiller1", "prefiller2": "prefiller1", "decoder1": "decoder1", "decoder2": "decoder1"}
    for name, source in names.items():
        for k, part in enumerate(("before", "after")):
            body = (FIXTURES / f"{source}_{part}.txt").read_text()
            deriver.instance(name).ingest(parse_metrics(body, now - HOUR - 20 + k * 10))
    stages = ProxyStageTracker(store)
    for k, part in enumerate(("before", "after")):
        stages.ingest(parse_metrics((FIXTURES / f"proxy_{part}.txt").read_text(), now - HOUR - 20 + k * 10))
    extra = []
    for name in names:
        extra += [f"{name}/kv_transfers_per_s", f"{name}/kv_gbps", f"{name}/up"]
    for p, d in (("prefiller1", "decoder1"), ("prefiller2", "decoder2"), ("prefiller1", "decoder2"), ("prefiller2", "decoder1")):
        extra += [f"{pair_key(p, d)}/{m}" for m in ("requests_per_s", "kv_wait_p50_ms", "kv_wait_p99_ms", "est_gbps")]
    for gpu in range(8):
        extra += [f"gpu/{gpu}/util", f"gpu/{gpu}/mem"]
    for name in extra:
        store.record(name, now - HOUR - 1, 0.0)
    series = store.names()
    for i in range(HOUR):
        t = now - HOUR + i
        for name in series:
            store.record(name, t, float(i % 97))
    return len(series)


def child(empty: bool) -> None:
    import psutil

    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.screens.dashboard import CockpitScreen

    app = PdtuiApp(None, demo=True, start_feeds=False, offer_reattach=False)
    n_series = 0 if empty else fill(app.session.store, time.time())

    async def run() -> None:
        async with app.run_test(size=(200, 60)) as pilot:
            await pilot.pause(0.5)
            screen = app.screen
            assert isinstance(screen, CockpitScreen)
            for _ in range(5):
                screen.refresh_all()
                await pilot.pause(0.1)

    asyncio.run(run())
    rss = psutil.Process().memory_info().rss
    print(json.dumps({"empty": empty, "series": n_series, "points_per_series": HOUR if not empty else 0,
                      "store_bytes": app.session.store.memory_bytes(), "rss_mib": round(rss / 2**20, 1)}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("--child-empty", "--child-full"):
        sys.path.insert(0, str(REPO))
        child(sys.argv[1] == "--child-empty")
        return 0
    results = []
    for mode in ("--child-empty", "--child-full"):
        done = subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True, timeout=600, cwd=REPO)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base, full = results
    print(json.dumps(results))
    print(f"one hour of history: {full['series']} series x {full['points_per_series']} points, store "
          f"{full['store_bytes'] / 2**20:.1f} MiB; TUI RSS {full['rss_mib']} MiB (target < 150) vs "
          f"{base['rss_mib']} MiB with no history (same app, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
