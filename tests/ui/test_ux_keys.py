"""Issue 19, keys: the log pane's keys work on arrival, `?` help lists every binding of
every screen and widget (read from the bindings themselves), `t` strips the proxy's
millisecond timestamps."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App

from pdtui.telemetry.monitor import DeploymentMonitor, MonitoredInstance
from pdtui.ui import keys
from pdtui.ui.observe import ObserveScreen
from pdtui.ui.observe.logpane import LogPane, PaneLog
from pdtui.ui.observe.logstyle import display_line
from pdtui.ui.screens.dashboard_logs import MergedLog
from pdtui.ui.screens.help import help_text
from tests.observe.test_logpane import wait_for

pytestmark = pytest.mark.timeout(120)


def test_t_strips_the_proxy_logs_millisecond_timestamps():
    line = "2026-11-29 10:53:48,123 INFO pdtui.proxy: request 1 routed"
    assert display_line(line, timestamps=False) == "INFO pdtui.proxy: request 1 routed"
    assert display_line(line, timestamps=True) == line


def test_help_lists_every_binding_of_every_screen_and_widget():
    text = help_text({})
    for spec in keys.KEY_SPECS:
        assert spec.description in text and spec.id in text
    for binding in list(LogPane.BINDINGS) + list(MergedLog.BINDINGS):
        assert binding.description in text
        assert keys.display_keys(binding.key) in text
    assert "  /                  Search" in text


async def test_log_keys_work_on_arrival(tmp_path):
    logs = []
    for name in ("proxy", "decoder1"):
        path = tmp_path / f"{name}.log"
        path.write_text(f"2026-11-29 10:53:48,123 INFO {name} started\n" + "x" * 300 + "\n")
        logs.append(MonitoredInstance(name, "decoder" if name != "proxy" else "proxy", str(path),
                                      "http://127.0.0.1:9/metrics"))
    monitor = DeploymentMonitor(logs, None, run_dir=str(tmp_path), scrape_interval_s=60).start()
    try:
        app = App()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = ObserveScreen(monitor)
            await app.push_screen(screen)
            await wait_for(pilot, lambda: isinstance(app.focused, PaneLog))
            pane = app.focused.parent
            assert isinstance(pane, LogPane) and pane.title == "proxy"
            # The footer shows the pane's keys (they are the focused widget's bindings).
            shown = {b.binding.key for b in screen.active_bindings.values() if b.binding.show}
            assert {"slash", "w", "t", "f", "l", "e", "s"} <= shown
            await pilot.press("w")
            assert pane.wrap
            await pilot.press("t")
            assert not pane.timestamps
            # Another tab: its log has the focus at once.
            await pilot.press("2")
            await wait_for(pilot, lambda: isinstance(app.focused, PaneLog) and app.focused.parent.title == "decoder1")
    finally:
        await asyncio.to_thread(monitor.stop)


@pytest.mark.timeout(180)
async def test_actions_follow_the_selected_instance(free_demo_profile):
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.screens.dialogs import ChoiceScreen
    from tests.ui.test_app import wait_for as app_wait

    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    app.session.background_load = False
    async with app.run_test(size=(160, 48)) as pilot:
        try:
            await app_wait(pilot, lambda: app.gpu_reading is not None, 20, "the first GPU reading")
            await pilot.press("u")  # launch all asks first
            await app_wait(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the launch question")
            await pilot.press("enter")
            phase = lambda: app.control.status() is not None and app.control.status().phase  # noqa: E731
            await app_wait(pilot, lambda: phase() == "ready", 60, "ready")
            state = lambda n: app.control.supervisor.instance(n).state.value  # noqa: E731
            await pilot.press("down")
            name = app.screen.selected_instance()
            assert name and name != "proxy"
            others = [i.name for i in app.control.status().instances if i.name != name]
            await pilot.press("s")  # stop the selected instance only, after a question
            await app_wait(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10,
                           f"the stop question ({name}: {state(name)}, focus {app.focused}, screen {app.screen})")
            assert name in str(app.screen.query_one("#question").render())
            await pilot.press("enter")
            await app_wait(pilot, lambda: state(name) == "stopped", 60, f"{name} stopped")
            assert all(state(o) == "ready" for o in others), {o: state(o) for o in others}
            await pilot.press("S")  # and start it again
            await app_wait(pilot, lambda: state(name) == "ready", 60, f"{name} ready again")
            await pilot.press("X")
            await app_wait(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the stop-all question")
            await pilot.press("enter")
            await app_wait(pilot, lambda: not app.control.running(), 60, "stopped")
        finally:
            if app.control.active:
                app.control.supervisor.stop().result(timeout=30)
