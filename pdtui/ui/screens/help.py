"""`?`: every binding of every screen, with the keys in effect after the user's keymap."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from pdtui.ui import keys, paths

SCOPE_TITLES = {
    "app": "Everywhere",
    "dashboard": "Cockpit",
    "editor": "Deployment editor",
    "picker": "GPU picker",
    "instance": "Instance details",
    "observe": "Observe screen (also 1-9: the tabs in order)",
}


def widget_bindings() -> list[tuple[str, list[Binding]]]:
    """The keys of the widgets that have their own (read from their BINDINGS, so help
    cannot drift from what the keys do)."""
    from pdtui.ui.observe.logpane import LogPane
    from pdtui.ui.screens.dashboard_logs import MergedLog

    return [
        ("Log pane (log tabs; cockpit log box after a / tab to it)", [b for b in LogPane.BINDINGS if isinstance(b, Binding)]),
        ("Cockpit log box, all instances", [b for b in MergedLog.BINDINGS if isinstance(b, Binding)]),
    ]


def help_text(keymap: dict[str, str]) -> str:
    effective = keys.effective_keys(keymap)
    lines: list[str] = []
    for scope, title in SCOPE_TITLES.items():
        lines.append(f"[b]{title}[/b]")
        for spec in keys.specs_for(scope):
            shown = keys.display_keys(effective[spec.id])
            lines.append(f"  {shown:<18} {spec.description:<18} [dim]{spec.id}[/dim]")
        lines.append("")
    for title, bindings in widget_bindings():
        lines.append(f"[b]{title}[/b]")
        for binding in bindings:
            shown = keys.display_keys(binding.key)
            lines.append(f"  {shown:<18} {binding.description}")
        lines.append("")
    lines.append("[b]Also[/b]")
    lines.append(f"  {'ctrl+p':<18} Command palette (launch, stop, open, themes …)")
    lines.append(f"  {'arrows / mouse':<18} Move in tables; click to select")
    lines.append("")
    lines.append(f"Rebind keys in {paths.keys_file()} (`id: keys`, e.g. `launch: ctrl+u`).")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]
    def __init__(self, keymap: dict[str, str]) -> None:
        super().__init__()
        self._keymap = keymap

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc to close"
            yield Static(help_text(self._keymap), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
