"""From the dashboard to the observe screens (issue 9's panes) of a running demo."""

from __future__ import annotations

import pytest

from pdtui.ui.app import PdtuiApp
from pdtui.ui.observe import ObserveScreen
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.screens.dashboard import CockpitScreen
from pdtui.ui.screens.dialogs import ChoiceScreen
from pdtui.ui.screens.instance import InstanceScreen
from tests.ui.test_app import SIZE, wait_for


@pytest.mark.timeout(600)  # a whole demo starts and stops: generous on a loaded 2-core machine
async def test_enter_then_l_opens_the_log_panes_of_the_running_deployment(free_demo_profile):
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(pilot, lambda: app.gpu_reading is not None, 60, "the first GPU reading")
            await pilot.press("l")  # logs: nothing launched yet, nothing happens
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, "the launch confirmation")
            await pilot.press("enter")  # confirm the launch
            await wait_for(pilot, lambda: app.control.status() is not None
                           and app.control.status().phase in ("ready", "failed"), 240, "the launch to end")
            status = app.control.status()
            assert status.phase == "ready", [(i.name, i.state, i.reason) for i in status.instances]
            await pilot.press("down", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, InstanceScreen), 30, "the drill-down")
            name = app.screen.instance_name
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, ObserveScreen), 30, "the observe screen")
            panes = list(app.screen.query(LogPane))
            assert len(panes) == 5  # proxy + 4 engines
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, InstanceScreen), 30, "back to the drill-down")
            assert app.screen.instance_name == name
            await pilot.press("escape")  # back to the dashboard
            await wait_for(pilot, lambda: isinstance(app.screen, CockpitScreen), 30, "the dashboard")
            await pilot.press("X")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, "the stop confirmation")
            await pilot.press("enter")  # confirm the stop
            await wait_for(pilot, lambda: not app.control.running(), 120, "stopped")
        finally:
            if app.control.active:
                app.control.supervisor.stop().result(timeout=30)
