"""The cockpit on a live demo deployment, driven by keys: letters and numbers jump to the
observe screen's tabs, history and the monitor survive every screen switch, the log box
follows the selection or shows every instance, and the demo load can be turned off."""

from __future__ import annotations

import pytest
from textual.widgets import TabbedContent

from pdtui.ui.app import PdtuiApp
from pdtui.ui.cockpit_rows import history_width
from pdtui.ui.observe import ObserveScreen
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.screens.dashboard import CockpitScreen
from pdtui.ui.screens.dashboard_logs import CockpitLogs, MergedLog
from pdtui.ui.session import BACKGROUND_JOB
from pdtui.ui.spark import sparkline
from tests.ui.test_app import wait_for

pytestmark = pytest.mark.timeout(180)


def test_sparkline_shares_a_scale_and_shows_gaps():
    assert sparkline([0, 50, 100], 3, 100.0) == "▁▅█"
    assert sparkline([float("nan"), 100.0], 4, 100.0) == "   █"
    assert sparkline([10, 10], 2, 100.0) == "▂▂"  # on the column's scale, not its own
    assert len(sparkline(list(range(1000)), 20)) == 20
    assert history_width(78, 62) == 8 and history_width(250, 62) == 40


async def test_cockpit_keys_history_and_load_across_screens(free_demo_profile):
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    async with app.run_test(size=(160, 48)) as pilot:
        try:
            await wait_for(pilot, lambda: app.gpu_reading is not None, 20, "the first GPU reading")
            await pilot.press("u")
            await pilot.pause()
            await pilot.press("enter")  # confirm the launch
            await wait_for(pilot, lambda: app.control.status() is not None and app.control.status().phase == "ready", 60, "ready")
            session = app.session
            monitor = session.monitor
            assert monitor is not None and monitor.running
            # The demo's gentle load starts by itself and moves the figures.
            await wait_for(pilot, lambda: (session.store.latest("decoder1/request_rate") or 0) > 0
                           or (session.store.latest("decoder2/request_rate") or 0) > 0, 60, "a request rate")
            await wait_for(pilot, lambda: bool(monitor.pair_rows()), 30, "a KV pair row")
            # The log box shows every instance interleaved by default.
            logs = app.screen.query_one(CockpitLogs)
            await wait_for(pilot, lambda: isinstance(logs.pane, MergedLog) and logs.pane.lines_shown > 0, 20, "log lines")
            # k: the observe screen at its KV tab; 1: the first log tab; escape: back.
            points = len(session.store.get("decoder1/request_rate"))
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, ObserveScreen), 10, "the observe screen")
            assert app.screen.query_one(TabbedContent).active == "kv"
            assert app.screen.monitor is monitor
            await pilot.press("1")
            await pilot.pause()
            assert app.screen.query_one(TabbedContent).active == "log-proxy"
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, CockpitScreen), 10, "back to the cockpit")
            # Same monitor, same history, still growing.
            assert session.monitor is monitor and monitor.running
            await wait_for(pilot, lambda: len(session.store.get("decoder1/request_rate")) > points, 20, "more points")
            # a: the selected instance's own pane (the full log screen's keys).
            await pilot.press("down", "a")
            await wait_for(pilot, lambda: isinstance(logs.pane, LogPane), 10, "the instance's pane")
            assert logs.following == app.screen.selected_instance()
            # b: the demo load off.
            job = monitor.jobs.get(BACKGROUND_JOB)
            assert job is not None and not job.done
            await pilot.press("b")
            await wait_for(pilot, lambda: job.done, 20, "the demo load to stop")
            assert not session.background_load
            await pilot.press("X")
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.control.running(), 60, "stopped")
        finally:
            if app.control.active:
                app.control.supervisor.stop().result(timeout=30)


def test_history_buckets_are_time_aligned_so_an_idle_cell_does_not_move():
    from pdtui.ui.spark import time_buckets

    points = [(float(t), 5.0) for t in range(1000, 1300)]  # 300 s of a flat series at 1 s
    first = time_buckets(points, 20, 300.0)
    assert len(first) == 20 and first == [5.0] * 20
    # one more sample inside the same 15 s bucket: the cell is the same string
    assert sparkline(time_buckets(points + [(1300.0, 5.0)], 20, 300.0), 20, 10.0) == sparkline(first, 20, 10.0)
    # a gap recorded as NaN shows as a gap; a missing sample (idle scrape) repeats the value
    sparse = [(1000.0, 1.0), (1100.0, float("nan")), (1200.0, 2.0)]
    buckets = time_buckets(sparse, 20, 300.0)
    assert buckets[-1] == 2.0 and any(b != b for b in buckets) and buckets.count(1.0) >= 1


def test_bucket_cache_gives_what_a_full_recompute_gives():
    import random

    from pdtui.telemetry.series import RingSeries
    from pdtui.ui.spark import BucketCache, time_buckets

    rng = random.Random(3)
    series, cache = RingSeries(600), BucketCache()
    t = 1000.0
    for _ in range(700):
        t += rng.choice((0.5, 1.0, 1.0, 7.0))
        series.append(t, rng.choice((float("nan"), rng.random() * 100)) if rng.random() < 0.1 else rng.random() * 100)
        got, want = cache.buckets(series, 20, 300.0), time_buckets(series.since(t - 400.0), 20, 300.0)
        assert [round(v, 9) if v == v else "gap" for v in got] == [round(v, 9) if v == v else "gap" for v in want]
