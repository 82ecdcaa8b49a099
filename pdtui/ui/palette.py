"""The command palette's entries (ctrl+p): the app-wide ones, each theme, then the screen's."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from pdtui.ui.themes import theme_names

if TYPE_CHECKING:
    from textual.app import App
    from textual.screen import Screen

__all__ = ["system_commands"]

# (the app's action, title, help)
APP_COMMANDS = (
    ("launch", "Launch deployment", "Start the proxy and every instance"),
    ("stop", "Stop deployment", "Stop every process (asks first)"),
    ("show_dashboard", "Cockpit", "GPUs, instances, KV transfer, logs"),
    ("show_editor", "Deployment editor", "Edit the profile: instances, GPUs, ports"),
    ("help", "Help: keys", "Every key binding"),
    ("quit_app", "Quit", "Quit (asks whether to stop or detach a running deployment)"),
)


def system_commands(app: App, screen: Screen) -> Iterable[SystemCommand]:
    for action, title, help_text in APP_COMMANDS:
        yield SystemCommand(title, help_text, partial(app.run_action, action))
    for name in theme_names(app):
        yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme", partial(setattr, app, "theme", name))
    handler = getattr(screen, "palette_commands", None)
    if handler is not None:
        yield from handler()
