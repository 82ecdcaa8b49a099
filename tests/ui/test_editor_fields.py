"""Pilot tests for the editor's fuller forms: typed into like an operator would, with the
problem shown under the field, the saved YAML, masked secrets and the preview checked."""

from __future__ import annotations

import yaml
from textual.widgets import Collapsible, Input, Select, Switch, TextArea

from tests.ui.test_app import SIZE, loaded, quiet_app, wait_for


def field_id(screen, path: str) -> str:
    for widget_id, (field_path, _spec) in screen._field_paths.items():
        if field_path == path:
            return widget_id
    raise AssertionError(f"no field for {path}; have {[p for p, _ in screen._field_paths.values()]}")


async def open_section(pilot, downs: int) -> None:
    """`e` opens the editor; the left list is Deployment, P prefiller1, P prefiller2, D decoder1, ..."""
    await loaded(pilot)
    await pilot.press("e", *["down"] * downs)
    await pilot.pause()


async def type_into(pilot, path: str, text: str, clear: int = 0):
    screen = pilot.app.screen
    widget = screen.query_one(f"#{field_id(screen, path)}")
    for group in widget.ancestors:
        if isinstance(group, Collapsible):
            group.collapsed = False  # what clicking its title does
    await pilot.pause()
    widget.focus()
    keys = ["enter" if c == "\n" else c for c in text]
    if isinstance(widget, TextArea):
        widget.move_cursor(widget.document.end)
    else:
        keys.insert(0, "end")
    await pilot.press(*["backspace"] * clear, *keys)
    await settled(pilot)
    return widget


async def settled(pilot) -> None:
    """Every keystroke's change event handled by the editor (the document, the problems and
    the preview follow it at once): waited for, never assumed after a pause."""
    screen = pilot.app.screen

    def handled() -> bool:
        form = screen._form()
        return form is None or not form.pending()

    await wait_for(pilot, handled, 30, "the editor to handle what was typed")
    await pilot.pause()


async def save(pilot) -> None:
    """ctrl+s shows what will change; enter on the focused Save button writes it."""
    from pdtui.ui.screens.save_dialog import SaveDiffScreen

    await pilot.press("ctrl+s")
    await pilot.pause()
    assert isinstance(pilot.app.screen, SaveDiffScreen)
    await pilot.press("enter")
    await pilot.pause()


def inline(pilot, path: str) -> str:
    screen = pilot.app.screen
    return str(screen.query_one(f"#{field_id(screen, path)}-error").render())


async def test_bad_values_show_inline_and_fixing_them_clears(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        assert app.screen.selection == ("decoders", 0)
        gmu = "decoders[0].vllm.gpu_memory_utilization"
        await type_into(pilot, gmu, "1.5")
        assert app.document.get(gmu) == 1.5
        assert "less than or equal to 1" in inline(pilot, gmu)
        assert any(p.path == gmu for p in app.document.validation.errors)
        await type_into(pilot, gmu, "0.8", clear=3)
        assert inline(pilot, gmu) == "" and app.document.get(gmu) == 0.8

        size = "decoders[0].lmcache.pd_buffer_size"
        box = app.screen.query_one(f"#{field_id(app.screen, size)}", Input)
        assert box.value == "2GiB"
        await type_into(pilot, size, "12 parsecs", clear=4)
        assert "unknown unit 'parsecs'" in inline(pilot, size)
        assert "12 parsecs" in "\n".join(str(s.render()) for s in app.screen.query(".problem"))
        await type_into(pilot, size, "1GiB", clear=10)
        assert inline(pilot, size) == "" and app.document.validation.ok
        assert app.document.get(size) == "1GiB"


async def test_unsplittable_command_is_an_inline_error_and_keeps_the_last_good_argv(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 0)
        box = await type_into(pilot, "vllm_command", "/opt/py -m 'vllm")
        assert "cannot split" in inline(pilot, "vllm_command")
        # What was typed before the quote was a whole command; the half-quoted text is not.
        assert app.document.get("vllm_command") == ["/opt/py", "-m"]
        assert not app.document.validation.ok  # but launching is blocked while it is wrong
        await pilot.press("'")
        await pilot.pause()
        assert inline(pilot, "vllm_command") == "" and app.document.validation.ok
        assert app.document.get("vllm_command") == ["/opt/py", "-m", "vllm"]
        assert box.value == "/opt/py -m 'vllm'"


async def test_emptied_fields_remove_their_keys_from_the_saved_yaml(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        await type_into(pilot, "decoders[0].lmcache.max_local_cpu_size", "", clear=3)  # was 0
        await type_into(pilot, "decoders[0].kv.skip_last_n_tokens", "2")
        await type_into(pilot, "decoders[0].kv.skip_last_n_tokens", "", clear=2)
        select = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].vllm.enforce_eager')}", Select)
        select.value = "false"
        switch = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].shared_gpus')}", Switch)
        switch.value = True
        await pilot.pause()
        await save(pilot)
        saved = yaml.safe_load(free_demo_profile.read_text())["decoders"][0]
        assert "max_local_cpu_size" not in saved["lmcache"] and saved["lmcache"]["pd_buffer_size"] == "2GiB"
        assert "kv" not in saved  # not `kv: {}` nor an empty string
        assert saved["vllm"] == {"enforce_eager": False} and saved["shared_gpus"] is True
        select.value = Select.NULL
        switch.value = False
        await pilot.pause()
        await save(pilot)
        saved = yaml.safe_load(free_demo_profile.read_text())["decoders"][0]
        assert "vllm" not in saved and "shared_gpus" not in saved


async def test_a_masked_secret_survives_a_save_unchanged(free_demo_profile):
    data = yaml.safe_load(free_demo_profile.read_text())
    data["decoders"][0]["env"] = {"HF_TOKEN": "hf_real_secret", "VLLM_LOGGING_LEVEL": "INFO"}
    free_demo_profile.write_text(yaml.safe_dump(data, sort_keys=False))
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        area = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].env')}", TextArea)
        assert area.text == "HF_TOKEN=***\nVLLM_LOGGING_LEVEL=INFO"
        assert "hf_real_secret" not in area.text
        await type_into(pilot, "decoders[0].env", "\nNCCL_DEBUG=WARN")
        await save(pilot)
        saved = yaml.safe_load(free_demo_profile.read_text())["decoders"][0]["env"]
        assert saved == {"HF_TOKEN": "hf_real_secret", "VLLM_LOGGING_LEVEL": "INFO", "NCCL_DEBUG": "WARN"}
        # A line that is not KEY=VALUE is reported at the field and stores nothing.
        await pilot.press("enter", *"oops")
        await pilot.pause()
        assert "not KEY=VALUE" in inline(pilot, "decoders[0].env")


async def test_preview_shows_a_newly_set_flag(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 1)
        assert "--max-model-len" not in str(app.screen.query_one("#preview-argv").render())
        await type_into(pilot, "prefillers[0].vllm.max_model_len", "4096")
        argv = str(app.screen.query_one("#preview-argv").render())
        assert "--max-model-len" in argv and "4096" in argv
