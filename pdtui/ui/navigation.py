"""Which screen comes up: the `Show*` requests of the screens and the app-wide keys.

Screens post `ShowGpu` / `ShowInstance` / `ShowObserve` (pdtui.ui.messages); the app hands
them here. Every screen but the cockpit is imported when first shown, so none of them
costs the first paint anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdtui.ui import messages

if TYPE_CHECKING:
    from textual.app import App

    from pdtui.ui.session import Session

__all__ = ["Navigator"]


class Navigator:
    def __init__(self, app: App, session: Session) -> None:
        self.app = app
        self.session = session

    def show(self, request: messages.ShowRequest) -> None:
        if isinstance(request, messages.ShowGpu):
            self.gpu(request.index)
        elif isinstance(request, messages.ShowInstance):
            self.instance(request.name)
        elif isinstance(request, messages.ShowObserve):
            self.observe(request.tab)

    def gpu(self, index: int) -> None:
        """One GPU: its figures and every process on it."""
        from pdtui.ui.rows import gpu_detail_lines
        from pdtui.ui.screens.dialogs import MessageScreen

        reading = self.session.gpu_reading
        gpu = next((g for g in reading.inventory.gpus if g.index == index), None) if reading else None
        if gpu is not None and reading is not None:
            self.app.push_screen(MessageScreen(f"GPU {gpu.index}: processes", gpu_detail_lines(gpu, reading.processes)))

    def instance(self, name: str) -> None:
        from pdtui.ui.screens.instance import InstanceScreen

        self.app.push_screen(InstanceScreen(name, self.session))

    def observe(self, tab: str | None) -> None:
        from pdtui.ui.observe import ObserveScreen

        if self.session.monitor is None:
            self.app.notify("Nothing is running: launch the deployment first (u on the cockpit).", severity="warning")
            return
        self.app.push_screen(ObserveScreen(self.session.monitor, initial=tab))

    def help(self, keymap: dict[str, str]) -> None:
        from pdtui.ui.screens.help import HelpScreen

        if not isinstance(self.app.screen, HelpScreen):
            self.app.push_screen(HelpScreen(keymap))

    def dashboard(self) -> None:
        """Back to the cockpit, the bottom of the stack."""
        from pdtui.ui.screens.dashboard import CockpitScreen

        while len(self.app.screen_stack) > 1 and not isinstance(self.app.screen, CockpitScreen):
            self.app.pop_screen()

    def editor(self) -> None:
        from pdtui.ui.screens.editor import EditorScreen

        if isinstance(self.app.screen, EditorScreen):
            return
        self.dashboard()
        if not self.app.is_screen_installed("editor"):
            self.app.install_screen(EditorScreen(), name="editor")
        self.app.push_screen("editor")
