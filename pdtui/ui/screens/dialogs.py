"""Small modal questions: confirm, choose one of several, enter a path, show problems."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from pdtui.clipaths import expand_user


class ChoiceScreen(ModalScreen[str]):
    """A question with buttons; dismisses with the chosen button's id ('cancel' on esc)."""

    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel"),
        # The buttons sit in a row: the arrows move along it, as in every dialog elsewhere.
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    def __init__(self, question: str, choices: list[tuple[str, str]], *, title: str = "") -> None:
        super().__init__()
        self._question = question
        self._choices = choices  # (id, label); the first is focused
        self._title = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            if self._title:
                box.border_title = self._title
            yield Static(self._question, id="question", markup=False)
            with Horizontal():
                for choice_id, label in self._choices:
                    yield Button(label, id=choice_id, variant="error" if choice_id in ("stop", "yes", "remove") else "default")

    def on_mount(self) -> None:
        buttons = self.query(Button)
        if buttons:  # none when it was dismissed before it mounted
            buttons.first().focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


def confirm(question: str, yes_label: str = "Yes", title: str = "Confirm") -> ChoiceScreen:
    return ChoiceScreen(question, [("yes", yes_label), ("cancel", "Cancel")], title=title)


class PathScreen(ModalScreen[str | None]):
    """Ask for a file path (open / save as)."""

    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    def __init__(self, prompt: str, initial: str = "", must_exist: bool = False) -> None:
        super().__init__()
        self._prompt = prompt
        self._initial = initial
        self._must_exist = must_exist

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._prompt)
            yield Input(self._initial, id="path-input")
            yield Static("", id="path-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:

        from pdtui.model.presets import resolve_profile_path

        text = event.value.strip()
        if not text:
            self.query_one("#path-error", Static).update("enter a file path (or a preset name such as 1p1d)")
            return
        if self._must_exist:
            path = resolve_profile_path(text)
            if not path.is_file():
                self.query_one("#path-error", Static).update(f"{text}: no such file or preset")
                return
            text = str(path)
        else:
            parent = expand_user(text).parent
            if parent.exists() and not parent.is_dir():
                self.query_one("#path-error", Static).update(f"{parent} is not a directory")
                return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class MessageScreen(ModalScreen[None]):
    """A list of lines to read (why a launch is blocked), closed with esc/enter."""

    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]
    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self._title = title
        self._lines = lines

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = self._title
            box.border_subtitle = "esc to close"
            for line in self._lines:
                yield Static(f"• {line}", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
