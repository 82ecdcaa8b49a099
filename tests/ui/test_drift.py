"""A running deployment against the saved profile: the dashboard says when they differ, and
restarting offers the new settings (with the argv diff) or the ones it runs with."""

from __future__ import annotations

import pytest

from pdtui.model.plandiff import argv_diff, argv_lines
from pdtui.ui.app import PdtuiApp
from pdtui.ui.messages import RestartRequested
from pdtui.ui.screens.dialogs import ChoiceScreen
from tests.ui.test_app import SIZE, wait_for


def test_argv_diff_pairs_flags_with_values():
    old = ["vllm", "serve", "m", "--port", "7200", "--enforce-eager"]
    new = ["vllm", "serve", "m", "--port", "7299", "--enforce-eager", "--max-model-len", "4096"]
    assert argv_lines(new)[3:] == ["--port 7299", "--enforce-eager", "--max-model-len 4096"]
    assert argv_diff(old, new) == ["- --port 7200", "+ --port 7299", "+ --max-model-len 4096"]
    assert argv_diff(old, old) == []


@pytest.mark.timeout(120)
async def test_saved_change_is_shown_and_restart_applies_it(free_demo_profile):
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(pilot, lambda: app.gpu_reading is not None, 20, "the first GPU reading")
            await pilot.press("u")
            await pilot.pause()
            await pilot.press("enter")  # confirm the launch
            await wait_for(pilot, lambda: app.control.status() is not None and app.control.status().phase == "ready", 60, "ready")
            title = lambda: str(app.screen.query_one("#title").render())  # noqa: E731
            assert "running ≠ saved" not in title()
            app.document.set_text("decoders[0].vllm.max_model_len", "int", "4096")
            app.document.save()
            app.refresh_dashboard()  # the cockpit re-reads the session (a message: wait for it)
            await wait_for(pilot, lambda: "running ≠ saved profile (decoder1)" in title(), 10, "the drift note")
            app.post_message(RestartRequested("decoder1"))  # what the cockpit posts on r
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the restart question")
            dialog = app.screen
            question = str(dialog.query_one("#question").render())
            assert "+ --max-model-len 4096" in question
            await pilot.click("#new")
            await wait_for(pilot, lambda: "--max-model-len" in app.control.status().instance("decoder1").argv
                           and str(app.control.status().instance("decoder1").state) == "ready", 60, "decoder1 restarted")
            app.refresh_dashboard()
            await wait_for(pilot, lambda: "running ≠ saved" not in title(), 10, "the note gone")
            # Same settings now: restart asks the plain question again.
            app.post_message(RestartRequested("decoder1"))  # what the cockpit posts on r
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the restart question")
            assert "Restart decoder1?" in str(app.screen.query_one("#question").render())
            await pilot.press("escape")
        finally:
            if app.control.active:
                app.control.supervisor.stop().result(timeout=30)
