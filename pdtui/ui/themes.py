"""Themes as files: the ones shipped in themes/ and the user's own in the XDG config dir.

A theme file is YAML with Textual's theme fields::

    name: pdtui-dark
    dark: true
    primary: "#4FA3E0"
    background: "#101418"
    ...
    variables: {footer-key-foreground: "#4FA3E0"}

Colours are checked when the file is loaded, so a typo gives a message with the file,
the field and the value instead of an error at paint time. A user file with the name of
a shipped theme replaces it.

Table cells and log lines colour their text with terminal colour names (`red` for a GPU
over 90 %, `green`, `yellow`, ...). Textual turns those into RGB through an ANSI palette;
`ansi_palette` builds it from the theme (red = error, green = success, yellow = warning,
blue = primary; `ansi-<name>` variables override any of the 16), so they stay readable on
the theme's backgrounds, also under NO_COLOR where Textual draws every colour as its grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.terminal_theme import TerminalTheme
from textual._ansi_theme import ALABASTER, MONOKAI
from textual.color import Color, ColorParseError
from textual.theme import Theme

from pdtui.ui import paths
from pdtui.ui.theme_cache import ThemeFileCache

if TYPE_CHECKING:
    from textual.app import App

    from pdtui.ui.settings import UiSettings

COLOUR_FIELDS = (
    "primary", "secondary", "warning", "error", "success", "accent",
    "foreground", "background", "surface", "panel", "boost",
)
DEFAULT_THEME = "pdtui-dark"
ANSI_NAMES = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_ANSI_FROM_THEME = {"red": "error", "green": "success", "yellow": "warning", "blue": "primary"}


@dataclass(frozen=True)
class ThemeLoad:
    themes: dict[str, Theme]
    problems: list[str]


def theme_from_dict(data: object, source: str) -> tuple[Theme | None, list[str]]:
    if not isinstance(data, dict):
        return None, [f"{source}: a theme file must be a mapping with at least 'name' and 'primary'"]
    problems: list[str] = []
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        return None, [f"{source}: 'name' is required (a string such as 'my-theme')"]
    allowed = {"name", "dark", "luminosity_spread", "text_alpha", "variables", *COLOUR_FIELDS}
    for key in data:
        if key not in allowed:
            problems.append(f"{source}: unknown field {key!r}; valid: {', '.join(sorted(allowed))}")
    kwargs: dict[str, Any] = {"name": name}  # checked field by field above Theme(**kwargs)
    for field_name in COLOUR_FIELDS:
        value = data.get(field_name)
        if value is None:
            continue
        try:
            Color.parse(str(value))
        except ColorParseError:
            problems.append(f"{source}: {field_name}: {value!r} is not a colour (use '#rrggbb' or a CSS colour name)")
            continue
        kwargs[field_name] = str(value)
    if "primary" not in kwargs:
        return None, problems + [f"{source}: 'primary' colour is required"]
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        problems.append(f"{source}: dark: must be true or false, got {dark!r}")
        dark = True
    kwargs["dark"] = dark
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        problems.append(f"{source}: variables: must be a mapping of CSS variable to value")
        variables = {}
    theme_variables = {str(k): str(v) for k, v in variables.items()}
    kwargs["variables"] = theme_variables
    for key, value in theme_variables.items():
        if key.startswith("ansi-"):
            if key[5:].removeprefix("bright_") not in ANSI_NAMES:
                problems.append(f"{source}: variables: {key}: not a terminal colour; valid: ansi-<{'|'.join(ANSI_NAMES)}>, ansi-bright_<…>")
            else:
                try:
                    Color.parse(value)
                except ColorParseError:
                    problems.append(f"{source}: variables: {key}: {value!r} is not a colour (use '#rrggbb')")
    for number in ("luminosity_spread", "text_alpha"):
        if number in data:
            value = data[number]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
                kwargs[number] = float(value)
            else:
                problems.append(f"{source}: {number}: must be a number between 0 and 1, got {value!r}")
    return Theme(**kwargs), problems


def load_theme_file(path: Path, cache: ThemeFileCache | None = None) -> tuple[Theme | None, list[str]]:
    """One theme file, checked; with a `cache`, read from it when the file is unchanged."""
    cached, data = cache.get(path) if cache is not None else (False, None)
    if not cached:
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            return None, [f"{path}: cannot read theme ({exc})"]
        except yaml.YAMLError as exc:
            return None, [f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})"]
        if cache is not None:
            cache.put(path, data)
    return theme_from_dict(data, str(path))


def load_themes(directories: list[Path | None] | None = None, cache: ThemeFileCache | None = None) -> ThemeLoad:
    """Themes from the shipped folder, then the user's (later wins by name)."""
    if directories is None:
        directories = [paths.shipped_themes_dir(), paths.user_themes_dir()]
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    files: list[Path] = []
    for directory in directories:
        if directory is None or not directory.is_dir():
            continue
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            files.append(path)
            theme, found = load_theme_file(path, cache)
            problems.extend(found)
            if theme is not None:
                themes[theme.name] = theme
    if cache is not None:
        cache.keep_only(files)
        cache.save()
    return ThemeLoad(themes, problems)


def install_themes(app: App, wanted: str) -> list[str]:
    """Register the theme files and select `wanted` before Textual parses any CSS:
    setting `App.theme` once the app runs re-parses every stylesheet and restyles every
    widget, which cost the first frame tens of ms. Returns the problems to show."""
    loaded = load_themes(cache=ThemeFileCache())  # no YAML import when the files are unchanged
    problems = list(loaded.problems)
    for theme in loaded.themes.values():
        app.register_theme(theme)
    if wanted not in app.available_themes:
        problems.append(f"theme {wanted!r} not found; available: {', '.join(theme_names(app))}")
        wanted = DEFAULT_THEME if DEFAULT_THEME in app.available_themes else "textual-dark"
    app.theme = wanted
    # Its watchers ran (classes, ANSI palette and filter) but nothing is parsed yet: with
    # the variables set now, the CSS refreshes they queued would only re-parse and re-style
    # before the first frame (~5 ms of it on the 2-core box), so they are dropped.
    app.stylesheet.set_variables(app.get_css_variables())
    _drop_queued_css_refreshes(app)
    return problems


def _drop_queued_css_refreshes(app: App) -> None:
    pending = getattr(app, "_next_callbacks", None)  # Textual's call_next queue (a list of Callback events)
    if app.is_running or not isinstance(pending, list):
        return
    refresh = type(app).refresh_css
    pending[:] = [c for c in pending
                  if getattr(getattr(getattr(c, "callback", None), "func", None), "__func__", None) is not refresh]


def theme_names(app: App) -> list[str]:
    """Ours first, then the user's theme files (Textual's built-ins are not offered)."""
    ours = [n for n in app.available_themes if n.startswith("pdtui-")]
    files = load_themes(cache=ThemeFileCache()).themes
    user = [n for n in app.available_themes if n not in ours and not n.startswith("textual-") and n in files]
    return sorted(ours) + sorted(user)


def ansi_palette(theme: Theme) -> TerminalTheme:
    """The RGB that terminal colour names get under this theme (normal and bright alike)."""
    default = MONOKAI if theme.dark else ALABASTER
    colours = [(c.red, c.green, c.blue) for c in (default.ansi_colors[i] for i in range(16))]
    for index, name in enumerate(ANSI_NAMES):
        for bright, key in ((0, name), (8, f"bright_{name}")):
            field_name = _ANSI_FROM_THEME.get(name)
            value = theme.variables.get(f"ansi-{key}") or theme.variables.get(f"ansi-{name}")
            if value is None and field_name is not None:
                value = getattr(theme, field_name, None)
            if value is None:
                continue
            try:
                colours[index + bright] = Color.parse(value).rgb
            except ColorParseError:
                continue  # reported when the file was loaded
    back, fore = default.background_color, default.foreground_color
    background = Color.parse(theme.background).rgb if theme.background else (back.red, back.green, back.blue)
    foreground = Color.parse(theme.foreground).rgb if theme.foreground else (fore.red, fore.green, fore.blue)
    return TerminalTheme(background, foreground, colours[:8], colours[8:])


def follow_theme(app: App, settings: UiSettings) -> None:
    """The app's theme changed: terminal colour names in cells take its colours (readable
    under NO_COLOR), and an operator's pick (not the one made from the settings file) is
    remembered in it."""
    palette = ansi_palette(app.current_theme)
    if app.current_theme.dark:
        app.ansi_theme_dark = palette
    else:
        app.ansi_theme_light = palette
    if app.is_running and app.theme != settings.theme:
        settings.theme = app.theme
        app.run_worker(lambda: _remember_theme(app), thread=True, group="settings", exit_on_error=False)


def _remember_theme(app: App) -> None:
    from pdtui.ui.settings import save_theme

    try:
        notice = save_theme(app.theme)  # the latest pick, whichever worker gets here last
    except OSError as exc:
        notice = f"theme not remembered: {exc}"
    if notice:
        app.call_from_thread(app.notify, notice, severity="warning", timeout=10)


def next_theme(app: App) -> None:
    names = theme_names(app) or list(app.available_themes)
    current = names.index(app.theme) if app.theme in names else -1
    app.theme = names[(current + 1) % len(names)]
    app.notify(f"theme: {app.theme}", timeout=2)
