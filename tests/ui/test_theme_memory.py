"""The chosen theme is remembered: settings file written atomically, read at start,
a corrupt file gives the default and a one-line notice, never a crash."""

from __future__ import annotations

import os
import stat
import time

import pytest
import yaml

from pdtui.ui import paths
from pdtui.ui.app import PdtuiApp
from pdtui.ui.settings import load_settings, save_theme

SIZE = (100, 30)


def test_save_adds_theme_to_a_new_file_and_load_reads_it(tmp_path):
    path = tmp_path / "cfg" / "config.yaml"
    assert save_theme("pdtui-light", path) is None
    assert yaml.safe_load(path.read_text()) == {"theme": "pdtui-light"}
    assert load_settings(path).theme == "pdtui-light"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_save_changes_only_the_theme_line(tmp_path):
    path = tmp_path / "config.yaml"
    original = "# my settings\ngpu_interval_s: 0.5   # faster\ntheme: pdtui-dark  # was dark\nstatus_interval_s: 2\n"
    path.write_text(original)
    os.chmod(path, 0o600)
    save_theme("pdtui-high-contrast", path)
    text = path.read_text()
    assert text == original.replace("theme: pdtui-dark", "theme: pdtui-high-contrast")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the operator's permissions kept
    settings = load_settings(path)
    assert (settings.theme, settings.gpu_interval_s, settings.problems) == ("pdtui-high-contrast", 0.5, [])


def test_odd_theme_names_are_quoted_so_they_read_back(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("gpu_interval_s: 1.0")  # no final newline
    for name in ("true", "1.5", "my theme: blue #2", "null"):
        save_theme(name, path)
        assert load_settings(path).theme == name
    assert yaml.safe_load(path.read_text())["gpu_interval_s"] == 1.0


@pytest.mark.parametrize("garbage", ["theme: [unclosed\n", "- a list\n- not a mapping\n", b"\xff\xfe\x00bin"])
def test_corrupt_file_gives_default_and_one_line_notice_then_is_kept_aside(tmp_path, garbage):
    path = tmp_path / "config.yaml"
    path.write_bytes(garbage if isinstance(garbage, bytes) else garbage.encode())
    settings = load_settings(path)
    assert settings.theme == "pdtui-dark"
    assert len(settings.problems) == 1 and "\n" not in settings.problems[0]
    assert str(path) in settings.problems[0]
    notice = save_theme("pdtui-light", path)
    assert notice is not None and "config.yaml.bak" in notice
    assert (tmp_path / "config.yaml.bak").read_bytes() == (garbage if isinstance(garbage, bytes) else garbage.encode())
    assert load_settings(path).theme == "pdtui-light"
    path.write_text("[[[ bad")
    save_theme("pdtui-dark", path)
    assert (tmp_path / "config.yaml.bak1").read_text() == "[[[ bad"  # the first backup is not overwritten


def test_config_dir_that_cannot_be_created_raises_oserror(tmp_path):
    blocker = tmp_path / "pdtui"
    blocker.write_text("a file where the config dir should be\n")
    with pytest.raises(OSError):
        save_theme("pdtui-light", blocker / "config.yaml")
    assert blocker.read_text() == "a file where the config dir should be\n"


async def test_a_failed_save_is_a_notice_not_a_crash(free_demo_profile, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PDTUI_CONFIG_DIR", str(blocker))
    app = _app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("T")
        await _wait(pilot, lambda: any("theme not remembered" in n.message for n in app._notifications), "the notice")
        assert app.theme == "pdtui-high-contrast"


async def _wait(pilot, condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _app(profile) -> PdtuiApp:
    return PdtuiApp(profile, demo=True, offer_reattach=False, start_feeds=False, keymap={})


async def test_theme_picked_with_T_is_used_at_the_next_start(free_demo_profile):
    config = paths.config_file()
    assert not config.exists()
    app = _app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        assert not config.exists()  # starting with the default writes nothing
        await pilot.press("T")
        await pilot.press("T")
        assert app.theme == "pdtui-light"
        await _wait(pilot, lambda: config.exists() and "pdtui-light" in config.read_text(), "the settings file")
    again = _app(free_demo_profile)
    async with again.run_test(size=SIZE) as pilot:
        assert again.theme == "pdtui-light"


async def test_corrupt_settings_file_starts_with_default_and_a_notice(free_demo_profile):
    config = paths.config_file()
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("theme: [oops\n")
    app = _app(free_demo_profile)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "pdtui-dark"
        await _wait(pilot, lambda: any("not valid YAML" in n.message for n in app._notifications), "the notice")
    assert config.read_text() == "theme: [oops\n"  # nothing picked, nothing written
