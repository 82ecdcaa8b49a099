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


async def settled_tables(pilot) -> None:
    """DataTable sizes its columns to new rows when the app is next idle: on a loaded machine
    the picture can be taken before that, with the columns of the rows before."""
    from pdtui.ui.widgets.diff_table import DiffTable
    from tests.ui.test_app import wait_for

    await wait_for(pilot, lambda: not any(t._require_update_dimensions or t._new_rows
                                          for t in pilot.app.screen.query(DiffTable)), 30, "the tables' column widths")
    await pilot.pause()


async def inject_gpus(pilot) -> None:
    from tests.ui.test_app import loaded

    from tests.ui.test_app import wait_for

    await loaded(pilot)
    # The cockpit mounts what follows the GPU table right after its first frame: wait for
    # it, or a loaded machine takes the picture of a half-built screen.
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "_complete", True), 30, "the whole cockpit")
    pilot.app.post_message(GpuUpdate(fixed_reading()))
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#gpu-table").row_count == 8, 30, "the GPU rows")
    await pilot.pause()
    # The GPU rows change the box's height; the scroll hints follow the new layout (the
    # next 1 s refresh at the latest): 80×24 shows 3 of the 8 GPUs.
    await settled_tables(pilot)
    if pilot.app.size.height <= 24:
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
