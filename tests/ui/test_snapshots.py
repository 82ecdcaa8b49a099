"""SVG snapshots of the main screens at 80x24 (the size an SSH/tmux session often has).

Deterministic: no live feeds (a seeded GPU reading with a fixed clock is injected), the
shipped demo profile, no user config. Update with `pytest tests/ui --snapshot-update`
after looking at the report.
"""

from __future__ import annotations

import sys

import pytest

from pdtui.model.presets import resolve_profile_path
from pdtui.ui.app import PdtuiApp
from pdtui.ui.gpu_feed import GpuUpdate
from tests.ui.conftest import fixed_reading

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def fixed_interpreter_path(monkeypatch):
    # The editor previews the exact argv, which for simulated engines starts with the
    # interpreter's path: make it the same in every checkout and virtual environment.
    monkeypatch.setattr(sys, "executable", "/opt/pdtui/venv/bin/python3")


def make_app() -> PdtuiApp:
    return PdtuiApp(resolve_profile_path("demo"), demo=True, offer_reattach=False, start_feeds=False, keymap={})


async def inject_gpus(pilot) -> None:
    from tests.ui.test_app import loaded

    await loaded(pilot)
    pilot.app.post_message(GpuUpdate(fixed_reading()))
    await pilot.pause()
    # The GPU rows change the box's height; the scroll hints follow the new layout (the
    # next 1 s refresh at the latest): 80×24 shows 3 of the 8 GPUs.
    if pilot.app.size.height <= 24:
        from tests.ui.test_app import wait_for

        await wait_for(pilot, lambda: "more" in str(pilot.app.screen.query_one("#gpu-box").border_subtitle), 10,
                       "the GPU box's scroll hint")


def test_dashboard_snapshot(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=inject_gpus)


@pytest.mark.parametrize("size", [(120, 40), (200, 60)], ids=["120x40", "200x60"])
def test_dashboard_snapshot_at_larger_sizes(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=inject_gpus)


async def open_editor_settled(pilot) -> None:
    from pdtui.ui.screens.editor import EditorScreen
    from tests.ui.test_app import wait_for

    await inject_gpus(pilot)
    app = pilot.app
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen) and not app.screen._building, 30, "the editor")
    # One key at a time, each waited for: a key that arrives before the list is ready
    # would land elsewhere and the picture would show another section.
    for index, selection in enumerate((("prefillers", 0), ("prefillers", 1), ("decoders", 0)), start=1):
        await pilot.press("down")
        await wait_for(pilot, lambda s=selection, i=index: app.screen.selection == s and not app.screen._building
                       and app.screen.query_one("#sections").index == i, 30, f"section {selection}")
    # Validation and the preview render in workers: wait for them, then for the repaint,
    # so the picture does not depend on how fast this machine is.
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.1)


def test_editor_snapshot(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_editor_settled)


def test_gpu_picker_snapshot(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=inject_gpus, press=["e", "down", "_", "ctrl+g", "_"])


def test_help_snapshot(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=inject_gpus, press=["question_mark", "_"])
