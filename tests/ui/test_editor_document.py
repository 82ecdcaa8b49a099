"""The editor keeps the operator's file: navigation never changes it, typing keeps every
key, saving shows the diff first and needs a second yes when the profile has errors."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.widgets import Input

from pdtui.ui.screens.editor import EditorScreen
from pdtui.ui.screens.save_dialog import SaveDiffScreen
from tests.conftest import REPO_ROOT
from tests.ui.test_app import SIZE, loaded, quiet_app
from tests.ui.test_editor_fields import field_id

COMMENTED = REPO_ROOT / "tests" / "model" / "profiles" / "commented.yaml"
PROFILES = sorted((REPO_ROOT / "configs").glob("*.yaml")) + [COMMENTED]


def copy_of(source: Path, directory: Path) -> Path:
    target = directory / source.name
    shutil.copyfile(source, target)
    return target


async def test_moving_down_the_sections_changes_nothing_and_ctrl_s_writes_nothing(tmp_path):
    """The repro of issue 13: `2`, Down four times with pauses, ctrl+s."""
    profile = copy_of(REPO_ROOT / "configs" / "demo.yaml", tmp_path)
    original = profile.read_bytes()
    app = quiet_app(profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        assert isinstance(app.screen, EditorScreen)
        for _ in range(4):
            await pilot.press("down")
            await pilot.pause(0.5)
        assert app.screen.selection == ("decoders", 1)
        assert not app.document.dirty and app.document.validation.ok
        title = str(app.screen.query_one("#editor-title").render())
        assert "saved" in title and "0 errors" in title
        # The decoder2 form shows decoder2's values, not decoder1's.
        assert app.screen.query_one(f"#{field_id(app.screen, 'decoders[1].port')}", Input).value == "7201"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)  # nothing to save: no dialog
    assert profile.read_bytes() == original
    assert not list(tmp_path.glob("*.bak*"))


async def test_fast_typing_keeps_every_key_even_across_a_switch(tmp_path):
    profile = copy_of(COMMENTED, tmp_path)
    app = quiet_app(profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2", "down", "down", "down", "down")  # decoder2
        await pilot.pause()
        screen = app.screen
        port = screen.query_one(f"#{field_id(screen, 'decoders[1].port')}", Input)
        name = screen.query_one(f"#{field_id(screen, 'decoders[1].name')}", Input)
        port.focus()
        # No pause between keys, and the section changes right after the last one.
        await pilot.press("end", *["backspace"] * 6, *"7209")
        name.focus()
        await pilot.press("end", *["backspace"] * 8, *"decoder-two-renamed", "shift+tab", "shift+tab", "shift+tab")
        screen.query_one("#sections").focus()
        await pilot.press("up")
        await pilot.pause()
        assert app.document.get("decoders[1].port") == 7209
        assert app.document.get("decoders[1].name") == "decoder-two-renamed"
        assert app.document.get("decoders[0].port") == 7200 and app.document.get("decoders[0].name") == "decoder1"
        changed = [line for line in app.document.diff(0) if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        assert changed == ["-  - name: decoder2", "+  - name: decoder-two-renamed", "-    port: 7201", "+    port: 7209"], "\n".join(app.document.diff(0))


async def test_save_shows_the_diff_and_errors_need_save_with_errors(tmp_path):
    profile = copy_of(COMMENTED, tmp_path)
    original = profile.read_text()
    app = quiet_app(profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2", "down", "down", "down")  # decoder1
        await pilot.pause()
        box = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].port')}", Input)
        box.focus()
        await pilot.press("end", "backspace", "x")  # "720x": not a port
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SaveDiffScreen)
        diff = str(dialog.query_one("#save-diff-text").render())
        assert "-    port: 7200" in diff and "+    port: 720x" in diff
        assert "1 error:" in str(dialog.query_one("#save-errors").render())
        assert str(dialog.query_one("#save").render()).strip() == "Save with errors"
        await pilot.press("enter")  # Cancel has the focus when there are errors
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen) and profile.read_text() == original
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.click("#save")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        saved = profile.read_text()
        assert saved == original.replace("    port: 7200\n", "    port: 720x\n")
        # Undo the edit, save again: the file is the original, byte for byte.
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert app.document.get("decoders[0].port") == 7200
        assert app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].port')}", Input).value == "7200"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
    assert profile.read_text() == original
    assert [p.name for p in sorted(tmp_path.glob("*.bak.*"))] == ["commented.yaml.bak.1", "commented.yaml.bak.2"]


NAVIGATION = st.lists(st.sampled_from(["up", "down", "tab", "shift+tab", "left", "right", "home", "end"]), min_size=1, max_size=25)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(PROFILES), keys=NAVIGATION)
def test_navigation_and_focus_changes_never_change_the_document(tmp_path_factory, source, keys):
    directory = tmp_path_factory.mktemp("nav")
    profile = copy_of(source, directory)
    original = profile.read_bytes()

    async def drive() -> None:
        app = quiet_app(profile)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("2")
            for key in keys:
                await pilot.press(key)
            await pilot.pause()
            if app.screen.__class__.__name__ != "EditorScreen":
                await pilot.press("escape")  # a Select's list was left open
                await pilot.pause()
            assert not app.document.dirty, app.document.diff()
            assert app.document.text().encode() == original
            await pilot.press("ctrl+s")
            await pilot.pause()

    asyncio.run(drive())
    assert profile.read_bytes() == original


async def test_a_change_event_sent_before_a_switch_writes_nowhere(tmp_path):
    """The cause of issue 13's silent corruption: a late event of the old form."""
    profile = copy_of(REPO_ROOT / "configs" / "demo.yaml", tmp_path)
    app = quiet_app(profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2", "down", "down", "down")  # decoder1
        await pilot.pause()
        port = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].port')}", Input)
        late = Input.Changed(port, "7100")  # made now, delivered after the switch below
        await pilot.press("down")  # decoder2: the same widget now shows decoders[1].port
        await pilot.pause()
        assert app.screen.selection == ("decoders", 1) and port.value == "7201"
        port.post_message(late)
        await pilot.pause()
        assert not app.document.dirty
        assert app.document.get("decoders[0].port") == 7200 and app.document.get("decoders[1].port") == 7201


async def test_gpu_that_this_box_does_not_have_is_an_error_in_the_editor(tmp_path):
    from pdtui.ui.gpu_feed import GpuUpdate
    from tests.ui.conftest import fixed_reading
    from tests.ui.test_editor_fields import inline, type_into

    profile = copy_of(REPO_ROOT / "configs" / "demo.yaml", tmp_path)
    app = quiet_app(profile)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        app.post_message(GpuUpdate(fixed_reading()))  # the simulated box: 8 GPUs
        await pilot.press("2", "down", "down", "down")
        await pilot.pause()
        await type_into(pilot, "decoders[0].gpus", "9", clear=1)
        assert "GPU 9 does not exist on this machine — this machine has 8 GPUs: 0..7" in inline(pilot, "decoders[0].gpus")
        await type_into(pilot, "decoders[0].gpus", "1", clear=1)
        assert "GPU 1 is given to several instances (prefiller2, decoder1)" in inline(pilot, "decoders[0].gpus")
        title = str(app.screen.query_one("#editor-title").render())
        assert "1 error," in title
