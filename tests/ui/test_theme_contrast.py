"""Every bundled theme is readable: text on its background reaches WCAG's 4.5:1 in full
colour, under NO_COLOR (Textual's monochrome filter) and on a 16-colour terminal.

The pairs are the ones pdtui draws text with: the theme's own variables as Textual derives
them (tables, footer, cursor, inputs) and the terminal colours that table cells use (`red`
for a GPU over 90 %, `green`/`yellow` for lighter loads, state colours), which pdtui maps
to the theme's colours (pdtui/ui/themes.py `ansi_palette`)."""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor
from rich.color import ColorSystem, ColorTriplet
from textual.app import App
from textual.color import Color

from pdtui.ui import paths
from pdtui.ui.themes import ansi_palette, load_themes

MINIMUM = 4.5
BUNDLED = load_themes([paths.shipped_themes_dir()]).themes
BACKGROUNDS = ("background", "surface", "panel")
# (text colour, what it is drawn on): Textual's derived variables that carry text.
VARIABLE_PAIRS = [
    *[(text, ground) for text in ("foreground", "text", "text-primary", "text-secondary", "text-accent",
                                  "text-warning", "text-error", "text-success", "warning", "error", "success")
      for ground in BACKGROUNDS],
    ("footer-foreground", "footer-background"),
    ("footer-key-foreground", "footer-background"),
    ("footer-description-foreground", "footer-background"),
    ("block-cursor-foreground", "block-cursor-background"),
    ("block-cursor-blurred-foreground", "block-cursor-blurred-background"),
    ("input-cursor-foreground", "input-cursor-background"),
]
# Terminal colours that pdtui's table cells and log lines use as text.
ANSI_TEXT = ("red", "green", "yellow", "blue", "magenta", "cyan")


def luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_formula_matches_wcag_reference_values() -> None:
    assert contrast((255, 255, 255), (0, 0, 0)) == pytest.approx(21.0)
    assert contrast((0x77, 0x77, 0x77), (255, 255, 255)) == pytest.approx(4.48, abs=0.01)
    # The case from issue 19: grey 237 on grey 234 (xterm palette) is about 1.5:1.
    assert contrast((0x3A, 0x3A, 0x3A), (0x1C, 0x1C, 0x1C)) == pytest.approx(1.5, abs=0.05)


def _variables(name: str) -> dict[str, str]:
    app = App()
    for theme in BUNDLED.values():
        app.register_theme(theme)
    app.theme = name
    return app.get_css_variables()


def _resolve(value: str, ground: Color | None = None) -> Color:
    """A CSS variable as drawn: `auto 87%` is Textual's contrasting text, alpha blended."""
    if value.startswith("auto"):
        assert ground is not None
        alpha = float(value.split()[1].rstrip("%")) / 100 if " " in value else 1.0
        return ground + ground.get_contrast_text(alpha)
    colour = Color.parse(value)
    return colour if ground is None else ground + colour


def _modes(fg: Color, bg: Color) -> dict[str, float]:
    """Contrast as seen in full colour, with NO_COLOR, and on a 16-colour terminal."""
    rgb_fg, rgb_bg = fg.rgb, bg.rgb
    mono_fg, mono_bg = fg.monochrome.rgb, bg.monochrome.rgb  # what Textual's NO_COLOR filter draws

    def sixteen(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        downgraded = RichColor.from_triplet(ColorTriplet(*rgb)).downgrade(ColorSystem.STANDARD)
        return tuple(downgraded.get_truecolor())  # nearest of the 16, drawn in an xterm-like palette

    return {
        "colour": contrast(rgb_fg, rgb_bg),
        "NO_COLOR": contrast(mono_fg, mono_bg),
        "16 colours": contrast(sixteen(rgb_fg), sixteen(rgb_bg)),
    }


def _failures(theme_name: str) -> list[str]:
    variables = _variables(theme_name)
    palette = ansi_palette(BUNDLED[theme_name])
    failures = []
    pairs = [(text, ground, variables[text]) for text, ground in VARIABLE_PAIRS]
    for name in ANSI_TEXT:
        colour = RichColor.parse(name).get_truecolor(palette, foreground=True)
        pairs += [(f"ansi {name}", ground, Color(*colour).hex) for ground in BACKGROUNDS]
    for text, ground, value in pairs:
        bg = _resolve(variables[ground], _resolve(variables["background"]))
        fg = _resolve(value, bg)
        for mode, ratio in _modes(fg, bg).items():
            if ratio < MINIMUM:
                failures.append(f"{theme_name}: {text} {fg.hex} on {ground} {bg.hex}: {ratio:.2f}:1 ({mode})")
    return failures


@pytest.mark.parametrize("theme_name", sorted(BUNDLED))
def test_bundled_theme_text_reaches_4_5_to_1(theme_name: str) -> None:
    assert _failures(theme_name) == []


def test_every_bundled_theme_is_checked() -> None:
    assert {"pdtui-dark", "pdtui-light", "pdtui-high-contrast"} <= set(BUNDLED)


def _busy_reading():
    """The demo box with GPUs at every load level: idle, 70 % and > 90 % (the issue's case)."""
    from dataclasses import replace

    from pdtui.gpus.recorded_source import RecordedSource
    from pdtui.ui.gpu_feed import GpuReading

    inventory = RecordedSource.demo(8, seed=3, wall_clock=lambda: 1_780_000_000.0).poll()
    gpus = list(inventory.gpus)
    for index, share, util in ((1, 0.70, 70), (2, 0.95, 97), (3, 0.93, 100)):
        used = int(gpus[index].memory_total * share)
        gpus[index] = replace(gpus[index], memory_used=used, memory_free=gpus[index].memory_total - used,
                              utilization_gpu=util)
    return GpuReading(replace(inventory, gpus=tuple(gpus)), ())


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
@pytest.mark.parametrize("theme_name", sorted(BUNDLED))
async def test_gpu_table_bars_and_text_are_readable_as_drawn(theme_name, no_color, free_demo_profile, monkeypatch):
    """What reaches the terminal (after Textual's ANSI and NO_COLOR filters) in the GPU table:
    every bar and figure, busy GPUs included, at >= 4.5:1 on the cell it is drawn on."""
    from textual.widgets import DataTable

    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.gpu_feed import GpuUpdate
    from pdtui.ui.settings import UiSettings

    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, start_feeds=False, keymap={},
                   settings=UiSettings(theme=theme_name))
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(GpuUpdate(_busy_reading()))
        table = None
        for _ in range(100):
            await pilot.pause(0.05)
            tables = [t for t in app.screen.query(DataTable)
                      if any(str(c.label) == "Memory" for c in t.columns.values()) and t.row_count == 8]
            if tables:
                table = tables[0]
                break
        assert table is not None, "the GPU table did not fill"
        await pilot.pause(0.1)
        region = table.content_region
        strips = app.screen._compositor.render_strips()
        checked, failures = 0, []
        for y in range(region.y, region.bottom):
            for segment in strips[y].crop(region.x, region.right):
                style = segment.style
                if not segment.text.strip() or style is None or style.color is None or style.bgcolor is None:
                    continue
                fg, bg = style.color.get_truecolor(), style.bgcolor.get_truecolor()
                ratio = contrast(tuple(fg), tuple(bg))
                checked += 1
                if ratio < MINIMUM:
                    failures.append(f"{segment.text.strip()!r} {fg.hex} on {bg.hex}: {ratio:.2f}:1")
        assert checked > 8 * 3  # bars and figures of every row were seen
        assert app.no_color is no_color
        assert failures == []


def test_terminal_colours_follow_the_theme_and_bad_ones_are_named() -> None:
    from pdtui.ui.themes import theme_from_dict

    theme, problems = theme_from_dict(
        {"name": "mine", "primary": "#336699", "error": "#FF8080",
         "variables": {"ansi-cyan": "#00FFFF", "ansi-bright_pink": "#FF00FF", "ansi-green": "grün"}},
        "mine.yaml",
    )
    assert theme is not None
    assert any("ansi-bright_pink" in p and "not a terminal colour" in p for p in problems)
    assert any("ansi-green" in p and "'grün' is not a colour" in p for p in problems)
    palette = ansi_palette(theme)
    assert tuple(RichColor.parse("red").get_truecolor(palette)) == (0xFF, 0x80, 0x80)  # the theme's error
    assert tuple(RichColor.parse("bright_red").get_truecolor(palette)) == (0xFF, 0x80, 0x80)
    assert tuple(RichColor.parse("cyan").get_truecolor(palette)) == (0, 0xFF, 0xFF)
    assert tuple(RichColor.parse("blue").get_truecolor(palette)) == (0x33, 0x66, 0x99)  # primary


async def test_switching_theme_switches_the_terminal_colours(free_demo_profile):
    from pdtui.ui.app import PdtuiApp

    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, start_feeds=False, keymap={})
    async with app.run_test(size=(100, 30)) as pilot:
        red = lambda: tuple(RichColor.parse("red").get_truecolor(app.ansi_theme))  # noqa: E731
        assert red() == Color.parse(BUNDLED["pdtui-dark"].error).rgb
        while app.theme != "pdtui-light":
            await pilot.press("T")
        assert red() == Color.parse(BUNDLED["pdtui-light"].error).rgb


def _box_drawing(text: str) -> bool:
    """Border lines are not text (WCAG's 4.5:1 is for text); their titles are."""
    return all("\u2500" <= c <= "\u257f" for c in text)


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
@pytest.mark.parametrize("theme_name", sorted(BUNDLED))
async def test_the_whole_cockpit_as_drawn_reaches_4_5_to_1(theme_name, no_color, free_demo_profile, monkeypatch):
    """Every glyph of text on the cockpit, as it reaches the terminal: the box titles (they
    were drawn in the 60 % border colour), the planned rows under the cursor (they were dim)
    and the footer's separator (Textual's 20 % foreground)."""
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.gpu_feed import GpuUpdate
    from pdtui.ui.settings import UiSettings
    from tests.ui.conftest import fixed_reading

    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, start_feeds=False, keymap={},
                   settings=UiSettings(theme=theme_name))
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(GpuUpdate(fixed_reading()))
        from tests.ui.test_app import wait_for

        await wait_for(pilot, lambda: app.document is not None and getattr(app.screen, "_complete", False)
                       and app.screen.query_one("#instance-table").row_count > 0, 60, "the whole cockpit")
        await pilot.pause(0.2)
        assert app.screen.query_one("#instance-table").has_focus  # its cursor is the block one
        seen, failures = set(), []
        for y, strip in enumerate(app.screen._compositor.render_strips()):
            for segment in strip:
                text, style = segment.text.strip(), segment.style
                if not text or _box_drawing(text) or style is None or style.color is None or style.bgcolor is None:
                    continue
                fg, bg = style.color.get_truecolor(), style.bgcolor.get_truecolor()
                ratio = contrast(tuple(fg), tuple(bg))
                seen.add(text)
                if ratio < MINIMUM:
                    failures.append(f"row {y}: {text[:30]!r} {fg.hex} on {bg.hex}: {ratio:.2f}:1")
        assert {"GPUs", "Instances", "planned", "\u258f"} <= seen  # the three cases were drawn and checked
        assert failures == []
