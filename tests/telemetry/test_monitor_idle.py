"""The monitor's idle back-off wakes on new data (no timing assumptions).

Each monitor here is built with an hour-long quiet delay, so a line can reach the
listeners within the test's bound only through a wake-up: a write to the file (inotify)
or traffic (`busy()`, what a request event from the proxy calls). The bounds are
generous (a loaded machine); a monitor that merely polls faster would still fail.
"""

from __future__ import annotations

import threading
import time

import pytest

from pdtui.telemetry.filewatch import FileWatch
from pdtui.telemetry.logtail import LogFollower
from pdtui.telemetry.monitor import DeploymentMonitor, MonitoredInstance

pytestmark = pytest.mark.timeout(120)

HOUR = 3600.0
LINE = "(APIServer pid=7) ERROR 12-01 10:00:00 [engine.py:1] something the operator must see\n"


def _monitor(log) -> tuple[DeploymentMonitor, list[str], threading.Event]:
    monitor = DeploymentMonitor([MonitoredInstance("decoder0", "decoder", str(log))], scrape=False,
                                tail_interval_s=HOUR, tail_idle_s=HOUR, sample_interval_s=HOUR)
    seen: list[str] = []
    arrived = threading.Event()

    def on_lines(_first: int, lines: list[str]) -> None:
        seen.extend(lines)
        arrived.set()

    monitor.follower("decoder0").add_listener(on_lines)
    return monitor, seen, arrived


def _after_first_round(monitor: DeploymentMonitor) -> None:
    """The first round (what is in the file already) is done: the loop now sleeps."""
    _wait_polls(monitor, 1)


def test_a_write_wakes_the_quiet_tail_at_once(tmp_path):
    log = tmp_path / "decoder0.log"
    log.write_text("")
    if not FileWatch(lambda: None).available:
        pytest.skip("no inotify here: the polling fallback is tested below")
    monitor, seen, arrived = _monitor(log)
    monitor.start()
    try:
        assert monitor.files_watched
        _after_first_round(monitor)
        polls = monitor.tail_polls
        with log.open("a") as handle:
            handle.write(LINE)
        assert arrived.wait(30), "a line written to a quiet log was not read (the watch did not wake the tail)"
        assert seen == [LINE.rstrip("\n")]
        assert monitor.tail_polls >= polls + 1
    finally:
        monitor.stop()


def test_without_inotify_traffic_wakes_the_quiet_tail(tmp_path, monkeypatch):
    monkeypatch.setenv("PDTUI_NO_INOTIFY", "1")
    log = tmp_path / "decoder0.log"
    log.write_text("")
    monitor, seen, arrived = _monitor(log)
    monitor.start()
    try:
        assert not monitor.files_watched
        _after_first_round(monitor)
        with log.open("a") as handle:
            handle.write(LINE)
        # Nothing reads the file for an hour unless woken; traffic seen by the proxy wakes it.
        assert not arrived.is_set()
        loop = monitor._loop
        assert loop is not None
        loop.call_soon_threadsafe(monitor.busy)
        assert arrived.wait(30), "busy() did not wake the quiet tail"
        assert seen == [LINE.rstrip("\n")]
    finally:
        monitor.stop()


def test_a_replaced_log_is_watched_again(tmp_path):
    """Rotation: the watch follows the inode, so the new file must be watched anew."""
    log = tmp_path / "decoder0.log"
    log.write_text("")
    if not FileWatch(lambda: None).available:
        pytest.skip("no inotify here")
    monitor, seen, arrived = _monitor(log)
    monitor.start()
    try:
        _after_first_round(monitor)
        with log.open("a") as handle:
            handle.write(LINE)
        assert arrived.wait(30)
        arrived.clear()
        replacement = tmp_path / "decoder0.log.new"
        replacement.write_text("")
        replacement.replace(log)  # the old inode goes: its watch wakes the tail, which re-watches
        polls = monitor.tail_polls
        _wait_polls(monitor, polls + 1)
        with log.open("a") as handle:
            handle.write("second file\n")
        assert arrived.wait(30), "a line in the replaced log was not read"
        assert seen[-1] == "second file"
    finally:
        monitor.stop()


def _wait_polls(monitor: DeploymentMonitor, count: int) -> None:
    done = threading.Event()
    loop = monitor._loop
    assert loop is not None

    def check() -> None:
        if monitor.tail_polls >= count:
            done.set()
        else:
            loop.call_later(0.05, check)

    loop.call_soon_threadsafe(check)
    assert done.wait(30), f"the tail loop did not reach {count} rounds"


def test_a_view_rings_once_per_drain(tmp_path):
    """The doorbell a pane drains on: one ring however many lines, again after a take."""
    log = tmp_path / "x.log"
    log.write_text("")
    follower = LogFollower(log)
    view = follower.view()
    rings: list[int] = []
    view.on_new = lambda: rings.append(1)
    follower.poll()
    assert rings == []  # nothing new, no ring
    log.write_text("a\nb\n")
    follower.poll()
    with log.open("a") as handle:
        handle.write("c\n")
    follower.poll()
    assert len(rings) == 1  # the pane has not drained yet: one ring for a, b and c
    assert [line for _, line in view.take_pending()[0]] == ["a", "b", "c"]
    with log.open("a") as handle:
        handle.write("d\n")
    follower.poll()
    assert len(rings) == 2
    follower.close()


def test_only_live_request_events_wake_the_scraper():
    """The proxy replays its history on connect and reports backends' health: neither is
    traffic (a young deployment's start-up events kept the scraper at 1 s for 15 s)."""
    import json
    import time

    monitor = DeploymentMonitor([], "http://127.0.0.1:9", tail_interval_s=HOUR, tail_idle_s=HOUR)
    scraper = monitor._scraper
    assert scraper is not None and scraper.current_interval() == scraper.idle_interval_s
    now = time.time()
    quiet = [
        {"type": "heartbeat"},
        {"type": "backend", "req_id": "-", "stage": "health", "state": "unhealthy", "ts": now},
        {"type": "stage", "req_id": "r1", "stage": "prefill", "state": "start", "ts": now - 120},  # replayed
    ]
    for event in quiet:
        monitor._on_event_line(json.dumps(event, separators=(",", ":")).encode() + b"\n")
    assert scraper.current_interval() == scraper.idle_interval_s
    live = {"type": "stage", "req_id": "r2", "stage": "prefill", "state": "start", "ts": now}
    monitor._on_event_line(json.dumps(live).encode() + b"\n")
    assert scraper.current_interval() == scraper.interval_s


STORE = ("[2026-03-01 09:42:18,821] LMCache INFO: [req_id=r-35 kv_group=0] Stored 35 out of total 35 tokens. "
         "size: 0.0004 GB, cost 30.4122 ms, throughput: 0.0132 GB/s; offload_time: 0.7334 ms, put_time: 29.6788 ms "
         "(cache_engine.py:600:lmcache.v1.cache_engine)\n")


def test_the_sampler_sleeps_after_an_all_zero_sample_and_new_kv_data_wakes_it(tmp_path, monkeypatch):
    """An idle deployment's figures are all zero: no sample a second for them (the charts read
    the missing seconds as the last value), until a KV transfer appears in a log."""
    from pdtui.telemetry import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "IDLE_SAMPLE_S", HOUR)
    log = tmp_path / "prefiller0.log"
    log.write_text("")
    if not FileWatch(lambda: None).available:
        pytest.skip("no inotify here")
    monitor = DeploymentMonitor([MonitoredInstance("prefiller0", "prefiller", str(log))], scrape=False,
                                tail_interval_s=HOUR, tail_idle_s=HOUR, sample_interval_s=0.02)
    samples: list[float] = []
    sampled = threading.Event()

    def on_sample() -> None:
        samples.append(monitor.store.latest("prefiller0/kv_transfers_per_s") or 0.0)
        sampled.set()

    monitor.on_sample(on_sample)
    monitor.start()
    try:
        assert sampled.wait(30)
        _after_first_round(monitor)
        sampled.clear()
        quiet = len(samples)
        assert not sampled.wait(0.5)  # 25 intervals: a sampler that kept its 1-interval pace fails
        assert len(samples) == quiet
        with log.open("a") as handle:
            handle.write(STORE)
        assert sampled.wait(30), "a KV transfer in the log did not wake the sampler"
        # While a figure is above zero the sampler keeps its pace.
        deadline = time.monotonic() + 30
        while not (len(samples) >= quiet + 5 and samples[-1] > 0):
            assert time.monotonic() < deadline, samples[quiet:]
            time.sleep(0.02)
    finally:
        monitor.stop()


def test_a_paused_watch_does_not_wake_and_a_discarding_resume_forgets_the_writes(tmp_path):
    """The tail pauses the watch while it gathers a burst of writes, then reads every file:
    the writes made meanwhile must not wake it once more (and a plain resume must)."""
    import asyncio

    log = tmp_path / "x.log"
    log.write_text("")
    changes: list[int] = []
    watch = FileWatch(lambda: changes.append(1))
    if not watch.available:
        pytest.skip("no inotify here")

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        watch.attach(loop)
        watch.watch([str(log)])
        seen = []
        for discard in (True, False):
            watch.pause()
            with log.open("a") as handle:
                handle.write("while paused\n")
            await asyncio.sleep(0.2)  # the loop runs: a paused watch calls nothing
            seen.append(len(changes))
            watch.resume(discard=discard)
            if discard:
                await asyncio.sleep(0.2)  # nor does one that forgot what was written meanwhile
            else:
                deadline = loop.time() + 10
                while not changes and loop.time() < deadline:  # the pending write, at once
                    await asyncio.sleep(0.01)
            seen.append(len(changes))
        return seen

    try:
        assert asyncio.run(scenario()) == [0, 0, 0, 1]
    finally:
        watch.close()
