"""The cockpit's log panes run no timer while the logs are quiet, and show a new line as
soon as it is written: the merged box and a LogPane both drain on their views' doorbells,
fed by the monitor's inotify-woken tail (whose quiet delay here is an hour, so nothing
but the wake-ups can deliver the line within the bounds)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from pdtui.telemetry.monitor import DeploymentMonitor, MonitoredInstance
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.screens.dashboard_logs import MergedLog
from tests.telemetry.test_monitor_idle import _wait_polls
from tests.ui.test_app import wait_for

pytestmark = pytest.mark.timeout(120)

HOUR = 3600.0


class Panes(App):
    def __init__(self, monitor: DeploymentMonitor) -> None:
        super().__init__()
        self.monitor = monitor

    def compose(self) -> ComposeResult:
        yield MergedLog(self.monitor, id="merged")
        follower = self.monitor.follower("decoder1")
        yield LogPane(follower.path, title="decoder1", follower=follower.view(), window=200, id="pane")


def append(path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


async def test_quiet_panes_do_not_tick_and_a_new_line_wakes_them(tmp_path):
    logs = {name: tmp_path / f"{name}.log" for name in ("decoder1", "prefiller1")}
    for path in logs.values():
        path.write_text("INFO 12-01 10:00:00 [api_server.py:1] started\n")
    monitor = DeploymentMonitor([MonitoredInstance(name, "decoder" if name.startswith("d") else "prefiller", str(path))
                                 for name, path in logs.items()],
                                scrape=False, tail_interval_s=HOUR, tail_idle_s=HOUR, sample_interval_s=HOUR).start()
    _wait_polls(monitor, 1)  # the first round has read what was there: from here only new lines ring
    app = Panes(monitor)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            merged = app.query_one(MergedLog)
            pane = app.query_one(LogPane)
            await wait_for(pilot, lambda: pane.shown_line_numbers() == [0], 30, "the pane's first line")
            # Quiet: nothing drains (no timer; a timer would have ticked 4 or 10 times a
            # second). The pane may still settle its first scroll (one tick at most).
            merged_drains, pane_ticks = merged.drains, pane.ticks
            await pilot.pause(1.0)
            assert merged.drains == merged_drains
            assert pane.ticks <= pane_ticks + 1
            # A line: both show it, each after one drain.
            append(logs["decoder1"], "ERROR 12-01 10:00:05 [engine.py:9] the operator must see this")
            await wait_for(pilot, lambda: merged.lines_shown == 1, 30, "the merged box showing the new line")
            await wait_for(pilot, lambda: pane.shown_line_numbers() == [0, 1], 30, "the pane showing the new line")
            # pdtui's own polling is hidden: such a line rings no pane.
            merged_drains = merged.drains
            append(logs["prefiller1"], 'INFO:     127.0.0.1:40000 - "GET /health HTTP/1.1" 200 OK')
            append(logs["prefiller1"], "INFO 12-01 10:00:06 [engine.py:9] a visible line")
            await wait_for(pilot, lambda: merged.lines_shown == 2, 30, "the second visible line")
            assert merged.drains <= merged_drains + 2
            assert pane.shown_line_numbers() == [0, 1]  # decoder1's pane: another file's lines are not its
    finally:
        monitor.stop()


class Drilldown(App):
    def __init__(self, session) -> None:
        super().__init__()
        self.session = session

    def on_mount(self) -> None:
        from pdtui.ui.screens.instance import InstanceScreen

        self.push_screen(InstanceScreen("decoder1", self.session))


async def test_the_instance_screen_log_runs_no_timer_while_quiet_and_a_new_line_wakes_it(tmp_path):
    from textual.widgets import Log

    from pdtui.ui.control import DeploymentControl
    from pdtui.ui.screens.instance import InstanceScreen
    from pdtui.ui.session import Session

    path = tmp_path / "decoder1.log"
    path.write_text("INFO 12-01 10:00:00 [api_server.py:1] started\n")
    monitor = DeploymentMonitor([MonitoredInstance("decoder1", "decoder", str(path))],
                                scrape=False, tail_interval_s=HOUR, tail_idle_s=HOUR, sample_interval_s=HOUR).start()
    _wait_polls(monitor, 1)
    session = Session(DeploymentControl(lambda _message: None))
    session.monitor = monitor
    app = Drilldown(session)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, InstanceScreen), 30, "the drill-down")
            screen = app.screen
            drains = screen.drains
            await pilot.pause(1.0)
            assert screen.drains == drains, "a quiet log must not be drained (a 0.25 s timer would have run 4 times)"
            append(path, "ERROR 12-01 10:00:05 [engine.py:9] the operator must see this")
            logs = screen.query_one("#instance-logs", Log)
            await wait_for(pilot, lambda: any("must see this" in line for line in logs.lines), 30, "the new line in the drill-down")
            assert screen.drains <= drains + 2
    finally:
        monitor.stop()
