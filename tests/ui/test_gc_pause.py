"""The collector paused by `pdtui` before Textual is imported is back on once the first
screen is painted (issue 17: the first frame), and a caller's own pause is left alone."""

from __future__ import annotations

import gc

from pdtui.ui import gc_pause
from tests.ui.test_app import SIZE, quiet_app, wait_for


async def test_the_collector_is_back_on_after_the_first_screen(free_demo_profile):
    gc_pause.pause()
    try:
        assert not gc.isenabled()
        app = quiet_app(free_demo_profile)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, gc.isenabled, 20, "the collector to resume")
            assert app.startup.first_screen_at is not None
    finally:
        gc.enable()


def test_a_pause_made_by_someone_else_is_not_resumed():
    gc.disable()
    try:
        gc_pause.pause()
        gc_pause.resume()
        assert not gc.isenabled()
    finally:
        gc.enable()
