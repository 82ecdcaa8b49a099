"""Theme files are read from a cache while unchanged, so start-up imports no YAML (issue 17:
the first frame), and the app queues no CSS refresh before its first frame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pdtui.ui.theme_cache import ThemeFileCache
from pdtui.ui.themes import load_themes

REPO = Path(__file__).resolve().parents[2]

THEME = """name: cached-test
dark: true
primary: "#112233"
variables:
  ansi-magenta: "#C678DD"
"""


def test_an_unchanged_file_comes_from_the_cache_and_a_changed_one_is_read_again(tmp_path):
    themes = tmp_path / "themes"
    themes.mkdir()
    theme_file = themes / "mine.yaml"
    theme_file.write_text(THEME)
    cache_file = tmp_path / "cache" / "themes.json"

    first = load_themes([themes], cache=ThemeFileCache(cache_file))
    assert first.themes["cached-test"].primary == "#112233" and not first.problems
    assert cache_file.is_file()
    cache = ThemeFileCache(cache_file)
    assert cache.get(theme_file) == (True, {"name": "cached-test", "dark": True, "primary": "#112233",
                                            "variables": {"ansi-magenta": "#C678DD"}})
    again = load_themes([themes], cache=cache)
    assert again.themes["cached-test"].primary == "#112233"

    theme_file.write_text(THEME.replace("#112233", "#445566"))
    os.utime(theme_file, ns=(theme_file.stat().st_atime_ns, theme_file.stat().st_mtime_ns + 1_000_000))
    changed = load_themes([themes], cache=ThemeFileCache(cache_file))
    assert changed.themes["cached-test"].primary == "#445566"


def test_problems_are_reported_on_every_start_and_a_bad_file_is_never_cached(tmp_path):
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "typo.yaml").write_text(THEME.replace('"#112233"', '"#11223"'))
    (themes / "broken.yaml").write_text("name: [unclosed\n")
    cache_file = tmp_path / "themes.json"
    for _ in range(2):  # the second time from the cache
        loaded = load_themes([themes], cache=ThemeFileCache(cache_file))
        assert any("typo.yaml: primary: '#11223' is not a colour" in p for p in loaded.problems), loaded.problems
        assert any("broken.yaml: not valid YAML" in p for p in loaded.problems), loaded.problems
    assert ThemeFileCache(cache_file).get(themes / "broken.yaml") == (False, None)


def test_a_cache_that_cannot_be_written_or_read_costs_only_the_yaml(tmp_path):
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "mine.yaml").write_text(THEME)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be")
    loaded = load_themes([themes], cache=ThemeFileCache(blocker / "themes.json"))
    assert "cached-test" in loaded.themes and not loaded.problems
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "cached-test" in load_themes([themes], cache=ThemeFileCache(garbage)).themes


def _start_app_in_a_fresh_interpreter(home: Path) -> str:
    code = ("import sys; from pdtui.ui.app import PdtuiApp; app = PdtuiApp(demo=True, start_feeds=False, keymap={}); "
            "print('yaml' in sys.modules, sorted(type(c.callback.func).__name__ + ':' + "
            "getattr(c.callback.func, '__name__', '') for c in app._next_callbacks))")
    env = dict(os.environ, PYTHONPATH=str(REPO), PDTUI_CONFIG_DIR=str(home / "config"),
               XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "xdg"))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_second_start_imports_no_yaml_and_queues_no_css_refresh(tmp_path):
    first = _start_app_in_a_fresh_interpreter(tmp_path)
    assert first.startswith("True")  # the first start parses the shipped themes
    second = _start_app_in_a_fresh_interpreter(tmp_path)
    assert second.startswith("False"), second
    assert "refresh_css" not in second, second  # nothing parsed yet: a refresh would only redo the first styling
