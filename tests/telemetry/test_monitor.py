"""The DeploymentMonitor without Textual, against a live simulated 1P1D deployment.

What the screens do is simulated with the monitor's own API: a screen that opens takes a
view of each log follower and reads the store; one that closes drops its views.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from pdtui.loadgen.load import LoadSpec, run_load
from pdtui.telemetry.logtail import ViewFilter, is_polling_line
from pdtui.telemetry.monitor import DeploymentMonitor, MonitoredInstance
from pdtui.telemetry.series import SeriesStore
from tests.observe.conftest import deployment  # noqa: F401 - the fixture
from tests.proxy.test_e2e_sim import _wait_ready

pytestmark = pytest.mark.timeout(120)


def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


def ready(dep) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            await _wait_ready(s, dep)

    asyncio.run(go())


def instances_of(dep) -> list[MonitoredInstance]:
    procs = dep.procs
    return [
        MonitoredInstance("proxy", "proxy", str(procs["proxy"].log), dep.proxy_url + "/metrics"),
        MonitoredInstance("prefiller0", "prefiller", str(procs["prefiller0"].log), dep.prefillers[0] + "/metrics"),
        MonitoredInstance("decoder0", "decoder", str(procs["decoder0"].log), dep.decoders[0] + "/metrics"),
    ]


def metrics_gets(path) -> int:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if '"GET /metrics' in line)


def test_one_tail_and_one_scrape_per_interval_with_every_screen_open(deployment):  # noqa: F811
    ready(deployment)
    # A fixed 1 s pace (no idle back-off) so the count is exact whatever the traffic.
    monitor = DeploymentMonitor(instances_of(deployment), deployment.proxy_url, scrape_interval_s=1.0,
                                idle_scrape_interval_s=None).start()
    try:
        # Every screen open at once: the cockpit, the full log screen and a second pane
        # of each file, each with its own view (and filter) of the one follower.
        filters = (ViewFilter(hide_polling=False), ViewFilter(), ViewFilter(min_level=2))
        views = [monitor.follower(name).view(view=f) for name in ("proxy", "prefiller0", "decoder0") for f in filters]
        wait_until(lambda: monitor.latest_scrape("decoder0") is not None, what="a first scrape")
        log = deployment.procs["decoder0"].log
        before, t0 = metrics_gets(log), time.monotonic()
        time.sleep(6.0)
        after, elapsed = metrics_gets(log), time.monotonic() - t0
        # The engine saw about one GET /metrics per second: one scraper, not one per screen.
        assert 1 <= after - before <= elapsed / 1.0 + 2, (after - before, elapsed)
        for name, follower in monitor.followers().items():
            assert follower.opens == 1, (name, follower.opens)
        assert all(v.started for v in views)
        # The panes' views got the new lines without reading the file themselves.
        batch, _ = views[6].take_pending()  # decoder0, polling lines shown
        assert any('"GET /metrics' in line for _, line in batch), "the decoder's view received no line"
        hidden, _ = views[7].take_pending()  # decoder0, the default view: our polling hidden
        assert not any('"GET /metrics' in line for _, line in hidden)
    finally:
        monitor.stop()
    assert not monitor.running


def test_history_survives_screens_and_a_load_run_outlives_its_screen(deployment):  # noqa: F811
    ready(deployment)
    monitor = DeploymentMonitor(instances_of(deployment), deployment.proxy_url, scrape_interval_s=0.5,
                                sample_interval_s=0.5).start()
    try:
        # The playground screen starts a load run, then the operator leaves it.
        screen_view = monitor.follower("decoder0").view()
        spec = LoadSpec(requests=12, concurrency=2, prompt_tokens=40, output_tokens=6)
        job = monitor.jobs.start("load", lambda job: run_load(deployment.proxy_url, spec, on_result=job.count),
                                 total=spec.requests)
        screen_view.stop()  # the screen is gone; nothing of the monitor goes with it
        assert job.wait(60), "the load run did not finish"
        assert job.error is None, job.error
        # Back on the playground: the result is there.
        assert monitor.jobs.get("load") is job
        assert job.result.ok == 12 and job.completed == 12
        # History kept across the screen's life: rates and KV figures from the run.
        wait_until(lambda: (monitor.store.latest("decoder0/request_rate") or 0) > 0, what="a request rate")
        n_before = len(monitor.store.get("decoder0/request_rate"))
        wait_until(lambda: any(r.requests for r in monitor.pair_stats.pairs()), what="a pair row")
        wait_until(lambda: (monitor.store.latest("prefiller0/kv_transfers_per_s") or 0) > 0, what="KV transfers/s")
        monitor.follower("decoder0").view()  # a new screen opens later
        wait_until(lambda: len(monitor.store.get("decoder0/request_rate")) > n_before, what="more points")
        assert monitor.store.names("pair/"), "no per-pair series"
    finally:
        monitor.stop()


def idle_monitor(dep) -> tuple[DeploymentMonitor, float]:
    """A monitor at its idle scrape pace (every 30 s), and when its last scrape started."""
    ready(dep)
    monitor = DeploymentMonitor(instances_of(dep), dep.proxy_url, scrape_interval_s=0.5, idle_scrape_interval_s=30.0)
    monitor._scraper.busy_hold_s = 2.0
    monitor.start()
    try:
        wait_until(lambda: monitor.latest_scrape("decoder0") is not None, what="a first scrape")
        wait_until(lambda: monitor._scraper.current_interval() == 30.0, what="the idle pace")
    except BaseException:
        monitor.stop()
        raise
    return monitor, monitor.latest_scrape("decoder0").started_at


def test_idle_scrapes_slow_down_and_a_request_wakes_them(deployment):  # noqa: F811
    monitor, t0 = idle_monitor(deployment)
    try:
        job = monitor.jobs.start("load", lambda job: run_load(deployment.proxy_url, LoadSpec(requests=2, concurrency=1,
                                                                                              prompt_tokens=20, output_tokens=2)))
        assert job.wait(30) and job.error is None
        # The proxy's request events woke the scraper long before its 30 s idle sleep ended.
        wait_until(lambda: monitor.latest_scrape("decoder0").started_at > t0, timeout_s=15, what="a woken scrape")
    finally:
        monitor.stop()


def test_a_request_straight_to_an_engine_wakes_the_idle_scraper(deployment):  # noqa: F811
    """Traffic that bypasses the proxy has no /events: the engine's access line of it does."""
    monitor, t0 = idle_monitor(deployment)
    try:
        async def direct() -> int:
            async with aiohttp.ClientSession() as s:
                body = {"model": "sim", "prompt": "hello", "max_tokens": 2}
                async with s.post(deployment.decoders[0] + "/v1/completions", json=body) as resp:
                    await resp.read()
                    return resp.status

        asyncio.run(direct())
        wait_until(lambda: monitor.latest_scrape("decoder0").started_at > t0, timeout_s=15, what="a woken scrape")
    finally:
        monitor.stop()


def test_a_job_of_a_name_runs_once_and_stop_cancels_it(deployment):  # noqa: F811
    monitor = DeploymentMonitor([], None, scrape=False).start()
    try:
        async def forever(job):
            while True:
                job.count()
                await asyncio.sleep(0.05)

        job = monitor.jobs.start("load", forever)
        wait_until(lambda: job.completed > 2, what="progress")
        with pytest.raises(RuntimeError, match="still going"):
            monitor.jobs.start("load", forever)
        job.cancel()
        assert job.wait(10)
        assert job.error == "stopped"
    finally:
        monitor.stop()


def test_polling_lines_are_hidden_by_default_and_the_file_keeps_them(tmp_path):
    log = tmp_path / "decoder.log"
    lines = [
        '(APIServer pid=1841) INFO:     127.0.0.1:33030 - "GET /health HTTP/1.1" 200 OK',
        '(APIServer pid=1841) INFO:     127.0.0.1:58350 - "GET /metrics HTTP/1.1" 200 OK',
        '(APIServer pid=1841) INFO:     127.0.0.1:58351 - "POST /v1/completions HTTP/1.1" 200 OK',
        '(APIServer pid=1841) INFO:     10.1.2.3:58350 - "GET /metrics HTTP/1.1" 200 OK',
    ]
    log.write_text("\n".join(lines) + "\n")
    assert [is_polling_line(line) for line in lines] == [True, True, False, False]
    from pdtui.telemetry.logtail import LogFollower

    follower = LogFollower(log)
    follower.poll()
    shown, _ = follower.take_pending()
    assert [n for n, _ in shown] == [2, 3]
    everything = follower.view(view=ViewFilter(hide_polling=False))
    log.write_text(log.read_text() + lines[0] + "\n")
    follower.poll()
    assert [n for n, _ in everything.take_pending()[0]] == [4]
    assert follower.take_pending()[0] == []
    assert follower.tail(10, ViewFilter()) == [(2, lines[2]), (3, lines[3])]
    assert log.read_text().count("GET /health") == 2  # the file is untouched
    follower.close()


def test_store_capacity_is_an_hour_at_one_second_and_bounded():
    store = SeriesStore(3600)
    for t in range(7200):
        store.record("gpu/0/util", float(t), t % 100)
    series = store.get("gpu/0/util")
    assert len(series) == 3600 and series.points()[0][0] == 3600.0
    assert store.memory_bytes() < 100_000


def test_targets_cover_engines_proxy_and_lmcache_internal_servers(tmp_path):
    from types import SimpleNamespace as NS

    status = NS(run_dir=str(tmp_path), instances=(
        NS(name="proxy", kind="proxy", port=9100, log_path=""),
        NS(name="prefiller1", kind="prefiller", port=7100, log_path=""),
        NS(name="decoder1", kind="decoder", port=7200, log_path=str(tmp_path / "d.log")),
    ))
    monitor = DeploymentMonitor.from_status(status, lmcache_ports={"decoder1": [6999, 7000]})
    targets = {t.name: t for t in monitor._scraper.targets}
    assert set(targets) == {"proxy", "prefiller1", "decoder1", "decoder1/lmcache0", "decoder1/lmcache1"}
    assert targets["decoder1/lmcache1"].url == "http://127.0.0.1:7000/metrics"
    assert targets["decoder1/lmcache1"].kind == "lmcache_internal" and targets["decoder1/lmcache1"].instance == "decoder1"
    assert targets["proxy"].kind == "proxy" and monitor.proxy_url == "http://127.0.0.1:9100"
    # Each engine's scrape keeps only what the deriver reads; the proxy's only its own families.
    assert "vllm:request_success" in targets["decoder1"].keep_prefixes
    assert targets["proxy"].keep_prefixes == ("pdtui_proxy_",)
    assert monitor.follower("prefiller1").path == str(tmp_path / "prefiller1.log")
    assert monitor.follower("decoder1").path == str(tmp_path / "d.log")
