"""Pilot tests: secrets in `vllm.extra_args` and `env` are masked on screen by value, stay
editable, and the real value (never the mask) is what a save writes."""

from __future__ import annotations

import yaml
from textual.widgets import Input, TextArea

from tests.ui.test_app import SIZE, quiet_app
from tests.ui.test_editor_fields import field_id, inline, open_section, save, type_into

SK = "sk-proj-Qw3rTy7UiOp1AsDfGhJkLzXcVbNm4567"
HF = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
ARGS = "decoders[0].vllm.extra_args"


def _on_screen(app) -> str:
    """Every text the editor shows: the fields, their problems, the preview, the title."""
    screen = app.screen
    parts = [w.value for w in screen.query(Input)] + [w.text for w in screen.query(TextArea)]
    parts += [str(s.render()) for s in screen.query("Static")]
    return "\n".join(parts)


def _with_args(profile, args, env=None) -> None:
    data = yaml.safe_load(profile.read_text())
    data["decoders"][0].setdefault("vllm", {})["extra_args"] = args
    if env is not None:
        data["decoders"][0]["env"] = env
    profile.write_text(yaml.safe_dump(data, sort_keys=False))


async def test_extra_args_secret_is_masked_and_survives_an_edit_around_it(free_demo_profile):
    _with_args(free_demo_profile, ["--api-key", SK, "--max-loras", "2"])
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        box = app.screen.query_one(f"#{field_id(app.screen, ARGS)}", Input)
        assert box.value == "--api-key *** --max-loras 2"
        assert SK not in _on_screen(app)
        # Edit around the hidden value: the stored key is kept exactly.
        box.focus()
        await pilot.press("end", "backspace", "4")
        await pilot.pause()
        assert app.document.get(ARGS) == ["--api-key", SK, "--max-loras", "4"]
        assert SK not in _on_screen(app)
        await save(pilot)
        saved = yaml.safe_load(free_demo_profile.read_text())["decoders"][0]["vllm"]["extra_args"]
        assert saved == ["--api-key", SK, "--max-loras", "4"]  # the value, never "***"


async def test_a_typed_token_is_masked_once_the_field_is_left_and_saved_in_clear(free_demo_profile):
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        box = await type_into(pilot, ARGS, f"--hf-token {HF}")
        assert app.document.get(ARGS) == ["--hf-token", HF]
        await pilot.press("tab")  # leave the field
        await pilot.pause()
        assert box.value == "--hf-token ***"
        assert HF not in _on_screen(app)
        assert app.document.get(ARGS) == ["--hf-token", HF]  # the re-masked text stored nothing new
        # Replacing the hidden value: select the field, type a new one.
        await type_into(pilot, ARGS, f"--api-key {SK}", clear=len(box.value))
        await pilot.press("tab")
        await pilot.pause()
        assert box.value == "--api-key ***" and app.document.get(ARGS) == ["--api-key", SK]
        await save(pilot)
        saved = yaml.safe_load(free_demo_profile.read_text())["decoders"][0]["vllm"]["extra_args"]
        assert saved == ["--api-key", SK]


async def test_a_mask_that_hides_nothing_is_refused_not_stored(free_demo_profile):
    _with_args(free_demo_profile, ["--api-key", SK], env={"MY_AUTH": HF})
    app = quiet_app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await open_section(pilot, 3)
        box = app.screen.query_one(f"#{field_id(app.screen, ARGS)}", Input)
        assert box.value == "--api-key ***"
        await type_into(pilot, ARGS, "x")  # "***x" stands for no value
        assert "no longer matches a hidden one" in inline(pilot, ARGS)
        assert app.document.get(ARGS) == ["--api-key", SK]
        area = app.screen.query_one(f"#{field_id(app.screen, 'decoders[0].env')}", TextArea)
        assert area.text == "MY_AUTH=***"  # by value: the name says nothing
        await type_into(pilot, "decoders[0].env", "\nOTHER=***")
        assert "hides no value" in inline(pilot, "decoders[0].env")
        env = app.document.get("decoders[0].env")
        assert env["MY_AUTH"] == HF and env.get("OTHER") != "***"  # "**" was typed on the way: kept
        assert "***" not in app.document.text()
