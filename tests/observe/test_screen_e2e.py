"""The ObserveScreen on a live simulated deployment: logs, KV numbers, playground, latency."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from textual.app import App
from textual.widgets import Button, DataTable, Input, Static

from pdtui.telemetry.monitor import DeploymentMonitor
from pdtui.ui.observe import LogPane, ObservedInstance, ObserveScreen
from pdtui.ui.observe.playground import Playground
from tests.observe.test_logpane import wait_for
from tests.proxy.test_e2e_sim import _wait_ready

pytestmark = pytest.mark.timeout(180)


async def test_observe_screen_on_a_live_deployment(deployment, tmp_path):
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, deployment)
    procs = deployment.procs
    instances = [
        ObservedInstance("proxy", "proxy", str(procs["proxy"].log), deployment.proxy_url + "/metrics"),
        ObservedInstance("prefiller0", "prefiller", str(procs["prefiller0"].log), deployment.prefillers[0] + "/metrics"),
        ObservedInstance("decoder0", "decoder", str(procs["decoder0"].log), deployment.decoders[0] + "/metrics"),
    ]
    monitor = DeploymentMonitor(instances, deployment.proxy_url, run_dir=str(tmp_path), scrape_interval_s=0.5).start()
    screen = ObserveScreen(monitor)
    app = App()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.push_screen(screen)
        await pilot.pause()
        panes = list(screen.query(LogPane))
        assert [p.title for p in panes] == ["proxy", "prefiller0", "decoder0"]
        await wait_for(pilot, lambda: all(p.follower.total_lines > 0 for p in panes))
        # The playground: a prompt of N generated tokens, the answer and the stage timeline.
        screen.query_one("TabbedContent").active = "playground"
        await pilot.pause()
        pg = screen.query_one(Playground)
        pg.query_one("#pg-prompt-tokens", Input).value = "50"
        pg.query_one("#pg-max-tokens", Input).value = "6"
        pg.query_one("#pg-send", Button).press()
        await wait_for(pilot, lambda: pg.last_result is not None, timeout=20)
        assert pg.last_result.ok, pg.last_result.error
        await wait_for(pilot, lambda: "prefill" in [row[0] for row in pg.last_timeline], timeout=15)
        assert {"kv_wait", "ttft", "decode"} <= {row[0] for row in pg.last_timeline}
        # A load run fills the summary table.
        for field, value in (("#pg-n", "6"), ("#pg-c", "2"), ("#pg-p", "40"), ("#pg-o", "4")):
            pg.query_one(field, Input).value = value
        pg.query_one("#pg-run", Button).press()
        await wait_for(pilot, lambda: pg.last_summary is not None, timeout=30)
        assert pg.last_summary.ok == 6
        assert pg.query_one("#pg-summary", DataTable).row_count >= 8
        # The KV numbers come from the engines' own log lines.
        await wait_for(pilot, lambda: {r.instance: r for r in screen.kv_stats.rows()}.get("prefiller0") is not None
                       and {r.instance: r for r in screen.kv_stats.rows()}["prefiller0"].stored_tokens > 0, timeout=15)
        # Bad input in the form is named, not raised.
        pg.query_one("#pg-n", Input).value = "lots"
        pg.query_one("#pg-run", Button).press()
        await pilot.pause()
        assert "requests: 'lots' is not a whole number" in str(pg.query_one("#pg-message", Static).render())
        # The latency series come from the proxy's /metrics.
        await wait_for(pilot, lambda: "proxy/ttft_p50" in screen.series, timeout=15)
    await asyncio.to_thread(monitor.stop)


async def test_a_load_run_goes_on_after_leaving_the_playground(deployment, tmp_path):
    async with aiohttp.ClientSession() as s:
        await _wait_ready(s, deployment)
    procs = deployment.procs
    instances = [
        ObservedInstance("proxy", "proxy", str(procs["proxy"].log), deployment.proxy_url + "/metrics"),
        ObservedInstance("decoder0", "decoder", str(procs["decoder0"].log), deployment.decoders[0] + "/metrics"),
    ]
    monitor = DeploymentMonitor(instances, deployment.proxy_url, run_dir=str(tmp_path)).start()
    app = App()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = ObserveScreen(monitor, initial="playground")
            await app.push_screen(screen)
            await pilot.pause()
            pg = screen.query_one(Playground)
            for field, value in (("#pg-n", "120"), ("#pg-c", "1"), ("#pg-p", "40"), ("#pg-o", "8")):
                pg.query_one(field, Input).value = value
            pg.query_one("#pg-run", Button).press()
            await wait_for(pilot, lambda: monitor.jobs.get("load") is not None, timeout=10)
            job = monitor.jobs.get("load")
            await app.pop_screen()  # the operator leaves while the run goes on
            await pilot.pause()
            assert not job.done, "the run should still be going (120 requests, one at a time)"
            await wait_for(pilot, lambda: job.done, timeout=120)
            assert job.error is None and job.result.ok == 120
            back = ObserveScreen(monitor, initial="playground")  # and comes back
            await app.push_screen(back)
            pg2 = back.query_one(Playground)
            await wait_for(pilot, lambda: pg2.last_summary is not None, timeout=10)
            assert pg2.last_summary.ok == 120
            assert "120/120 ok" in str(pg2.query_one("#pg-message", Static).render())
    finally:
        await asyncio.to_thread(monitor.stop)
