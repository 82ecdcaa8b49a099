"""Before a profile is written: exactly which lines change, and whether it has errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

MAX_SHOWN_PROBLEMS = 5


def diff_text(lines: list[str]) -> Text:
    """A unified diff, removed lines red and added lines green."""
    text = Text()
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = "dim"
        text.append(line + "\n", style=style)
    return text


class SaveDiffScreen(ModalScreen[str]):
    """Shows the diff; dismisses with "save" or "cancel". With errors the button says
    "Save with errors" and the errors are listed: nothing is written without that click."""

    BINDINGS = [Binding("escape", "choose('cancel')", "Cancel")]
    CSS_PATH = "screens.tcss"

    def __init__(self, path_name: str, diff: list[str], errors: list[str]) -> None:
        super().__init__(classes="with-errors" if errors else "")
        self._path_name = path_name
        self._diff = diff
        self._errors = errors

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"Save {self._path_name}?"
            box.border_subtitle = "esc cancels"
            with VerticalScroll(id="save-diff"):
                if self._diff:
                    yield Static(diff_text(self._diff), id="save-diff-text")
                else:
                    yield Static("No change: the file on disk stays as it is.", id="save-diff-text")
            if self._errors:
                shown = self._errors[:MAX_SHOWN_PROBLEMS]
                more = len(self._errors) - len(shown)
                lines = [f"The profile has {len(self._errors)} error{'s' if len(self._errors) != 1 else ''}:"]
                lines += [f"• {e}" for e in shown] + ([f"… and {more} more"] if more else [])
                yield Static("\n".join(lines), id="save-errors", markup=False)
            with Horizontal():
                label = "Save with errors" if self._errors else "Save"
                yield Button(label, id="save", variant="error" if self._errors else "primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        # With errors, Cancel is the default: saving a broken profile takes a deliberate move.
        self.query_one("#cancel" if self._errors else "#save", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


def ask_and_save(screen: Any, doc: Any, path: Path) -> None:
    """Show the diff of what saving `doc` to `path` changes, then write it if the operator
    says so; `screen.saved()` is called after the write."""
    import difflib

    same_file = path == doc.path
    if same_file and not doc.dirty:
        screen.notify(f"no change to save: {path.name} is as on disk")
        return
    if same_file:
        diff = doc.diff()
    else:
        old = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        diff = list(difflib.unified_diff(old, doc.text().splitlines(), f"{path.name} (on disk)", f"{path.name} (new)",
                                         n=1, lineterm=""))
    errors = [p.format(doc.path.name) for p in doc.validation.errors]

    def chosen(answer: str | None) -> None:
        if answer != "save":
            return
        try:
            backup = doc.save(path)
        except OSError as exc:
            screen.notify(f"cannot save {path}: {exc.strerror or exc}", severity="error", timeout=10)
            return
        note = f" (previous version kept as {backup.name})" if backup else ""
        left = len(doc.validation.errors)
        screen.notify(f"saved {path}{note}" + (f"; it still has {left} error{'s' if left != 1 else ''}" if left else ""),
                      severity="warning" if left else "information")
        screen.saved()

    screen.app.push_screen(SaveDiffScreen(path.name, diff, errors), chosen)
