"""`K` in the cockpit stops GPU processes that carry a pdtui run marker but belong to no live
instance (issue 20: an EngineCore left by a dead API server), after a confirmation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pdtui.constants import RUN_MARKER_ENV
from pdtui.ui.app import PdtuiApp
from pdtui.ui.screens.dialogs import ChoiceScreen
from tests.ui.test_app import wait_for

SIZE = (120, 40)


@pytest.mark.timeout(120)
async def test_k_stops_an_orphan_after_asking(free_demo_profile):
    # Marked, not a group leader, and no ancestor with the same marker: an orphan of
    # orphan-run/decoder1, as an EngineCore is after kill -9 of its API server.
    env = dict(os.environ, **{RUN_MARKER_ENV: "orphan-run-20261201-000000/decoder1"})
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env)
    try:
        app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("K")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 30, "the stop-orphans question")
            question = str(app.screen.query_one("#question").render())
            assert f"{orphan.pid}" in question and "orphan of orphan-run-20261201-000000/decoder1" in question
            assert orphan.poll() is None  # nothing is stopped before the answer
            await pilot.click("#yes")
            await wait_for(pilot, lambda: orphan.poll() is not None, 60, "the orphan to be stopped")
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()
