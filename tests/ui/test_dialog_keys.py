"""The modal question's buttons follow the arrow keys."""

from __future__ import annotations

from textual.app import App

from pdtui.ui.screens.dialogs import ChoiceScreen


async def test_arrows_move_along_the_buttons_and_enter_picks_the_focused_one():
    answers: list[str] = []

    class Host(App):
        def on_mount(self) -> None:
            self.push_screen(ChoiceScreen("Quit?", [("stop", "Stop"), ("detach", "Detach"), ("cancel", "Cancel")]),
                             answers.append)

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "stop"
        await pilot.press("right")
        assert app.focused.id == "detach"
        await pilot.press("right", "left", "left")
        assert app.focused.id == "stop"
        await pilot.press("right", "enter")
        await pilot.pause()
    assert answers == ["detach"]
