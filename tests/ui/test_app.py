"""Pilot tests: the app driven by keys, as an operator would."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Input

from pdtui.ui.app import PdtuiApp
from pdtui.ui.gpu_feed import GpuUpdate
from pdtui.ui.screens.dashboard import DashboardScreen
from pdtui.ui.screens.dialogs import ChoiceScreen, MessageScreen
from pdtui.ui.screens.editor import EditorScreen
from pdtui.ui.screens.help import HelpScreen
from pdtui.ui.screens.picker import GpuPickerScreen
from pdtui.ui.widgets.diff_table import DiffTable
from tests.ui.conftest import fixed_reading

SIZE = (100, 30)


def quiet_app(profile, **kwargs) -> PdtuiApp:
    """The app without live feeds: GPU readings are injected, nothing is polled."""
    return PdtuiApp(profile, demo=True, offer_reattach=False, start_feeds=False, keymap=kwargs.pop("keymap", {}), **kwargs)


async def wait_for(pilot, condition, timeout_s: float = 40.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def loaded(pilot) -> None:
    """The profile is read on a thread after the first paint."""
    await wait_for(pilot, lambda: pilot.app.document is not None, 20, "the profile to load")
    await pilot.pause()


def table_text(app, selector: str) -> str:
    """The table's rows as text; "" while it is not mounted (the cockpit mounts everything
    after the GPU table right after its first frame)."""
    from textual.css.query import NoMatches

    try:
        table = app.screen.query_one(selector, DiffTable)
    except NoMatches:
        return ""
    return "\n".join(" ".join(str(c) for c in table.get_row_at(r)) for r in range(table.row_count))


async def test_dashboard_shows_gpus_and_planned_instances(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.post_message(GpuUpdate(fixed_reading()))
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.screen.query_one("#gpu-table", DiffTable).row_count == 8
        rows = table_text(app, "#instance-table")
        for name in ("proxy", "prefiller1", "prefiller2", "decoder1", "decoder2"):
            assert name in rows
        assert "planned" in rows
        title = str(app.screen.query_one("#title").render())
        assert "SIMULATION" in title
        health = str(app.screen.query_one("#health").render())
        assert "not running" in health and "8 GPUs (simulated)" in health


async def test_editor_port_conflict_shows_inline_then_fix_clears_and_launch_is_blocked(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("e")
        assert isinstance(app.screen, EditorScreen)
        await pilot.press("down", "down", "down")  # Deployment, P1, P2, -> D decoder1
        await pilot.pause()
        assert app.screen.selection == ("decoders", 0)
        port_input = app.screen.query_one("#field-decoder-port", Input)
        clash = str(app.document.get("prefillers[0].port"))
        port_input.focus()
        await pilot.press("end", *["backspace"] * 6, *clash)
        await pilot.pause()
        error_line = str(app.screen.query_one("#field-decoder-port-error").render())
        assert f"port {clash} is also prefiller1" in error_line
        assert "decoders[0].port" in " ".join(str(s.render()) for s in app.screen.query(".problem"))
        # Launch is refused while the profile is invalid, with the reason.
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        await pilot.press("escape")
        # Fix it: the inline error goes away.
        await pilot.press("e")
        port_input = app.screen.query_one("#field-decoder-port", Input)
        port_input.focus()
        await pilot.press("end", *["backspace"] * 6, *str(int(clash) + 3000))
        await pilot.pause()
        assert str(app.screen.query_one("#field-decoder-port-error").render()) == ""
        assert app.document.validation.ok and app.document.dirty


async def test_gpu_picker_marks_taken_gpus_and_picks_one(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.post_message(GpuUpdate(fixed_reading()))
        await pilot.press("e", "down")  # prefiller1 (gpus [0], TP 1)
        await pilot.pause()
        await pilot.press("ctrl+g")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, GpuPickerScreen)
        notes = table_text(app, "#picker-table")
        assert "given to prefiller2" in notes and "given to decoder1" in notes
        assert "TP size 1: already 1 picked" in notes
        await pilot.press("space")  # unpick GPU 0 (cursor starts on row 0)
        assert picker.chosen == []
        for _ in range(5):
            await pilot.press("down")
        await pilot.press("space")  # GPU 5
        assert picker.chosen == [5]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        assert app.document.get("prefillers[0].gpus") == [5]
        assert str(app.screen.query_one("#field-prefiller-gpus", Input).value) == "5"


async def test_help_lists_every_binding_with_user_keys(free_demo_profile):
    app = quiet_app(free_demo_profile, keymap={"launch": "ctrl+u"})
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        assert "ctrl+u" in text and "Launch" in text and "Pick GPUs" in text and "keys.yaml" in text
        await pilot.press("escape")
        # The rebinding is live: the default key u no longer launches.
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen) and not app.control.active


async def test_theme_switch_cycles_shipped_themes(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "pdtui-dark"
        await pilot.press("T")
        assert app.theme == "pdtui-high-contrast"
        await pilot.press("T")
        assert app.theme == "pdtui-light"


@pytest.mark.timeout(120)
async def test_launch_demo_see_ready_then_stop(free_demo_profile):
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(pilot, lambda: app.gpu_reading is not None, 20, "the first GPU reading")
            await pilot.press("u")  # launch all: asks first
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the launch question")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.control.status() is not None and app.control.status().phase == "ready", 60, "ready")
            await pilot.pause(0.3)
            rows = table_text(app, "#instance-table")
            assert rows.count("ready") == 5, rows
            # The simulated engines' GPU use shows on the GPUs they were given.
            await wait_for(pilot, lambda: "decoder1" in table_text(app, "#gpu-table"), 20, "GPU holders")
            # Quit asks what to do with the running deployment; cancel keeps everything.
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ChoiceScreen)
            await pilot.press("escape")
            # Stop all (X) asks first, then stops everything.
            await pilot.press("X")
            await pilot.pause()
            assert isinstance(app.screen, ChoiceScreen)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.control.running(), 60, "stopped")
            await pilot.pause(0.3)
            rows = table_text(app, "#instance-table")
            assert rows.count("stopped") == 5, rows
        finally:
            if app.control.active:
                fut = app.control.supervisor.stop()
                fut.result(timeout=30)
