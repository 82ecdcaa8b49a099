"""The pdtui Textual app: wires the GPU feed, the session and the screens.

Attributes down, messages up: screens are given the `Session` (deployment control, the
deployment's monitor and history store, GPU reading, profile document) and post typed
requests (pdtui.ui.messages): a `DeploymentRequest` is carried out by `DeploymentCommands`
(pdtui.ui.commands), a `ShowRequest` by the `Navigator` (pdtui.ui.navigation). What
happens from mount to a complete first screen is `Startup`'s (pdtui.ui.startup). The app
scrapes nothing and fills no table: telemetry is the deployment monitor's, rendering the
screens'. Worker failures are reported in one place (`on_worker_state_changed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from pdtui.ui import keys, messages, paths
from pdtui.ui.bindings import bindings_for
from pdtui.ui.commands import DeploymentCommands
from pdtui.ui.control import DeploymentControl, SupervisorEvent
from pdtui.ui.drift import dashboard_note
from pdtui.ui.navigation import Navigator
from pdtui.ui.screens.dashboard import CockpitScreen
from pdtui.ui.session import Session
from pdtui.ui.settings import UiSettings, load_settings
from pdtui.ui.startup import Startup
from pdtui.ui.themes import follow_theme, install_themes, next_theme

if TYPE_CHECKING:
    from pdtui.gpus.source import GpuSource
    from pdtui.ui.gpu_feed import GpuFeed, GpuUpdate


class PdtuiApp(App):
    TITLE = "pdtui"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings_for("app") + [Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True)]
    ENABLE_COMMAND_PALETTE = True
    tour: Any = None  # pdtui.ui.tour.Tour (`--tour`): it starts once mounted; any key ends it

    def __init__(self, profile_path: Path | None = None, *, demo: bool = False, gpu_source: GpuSource | None = None,
                 settings: UiSettings | None = None, keymap: dict[str, str] | None = None, offer_reattach: bool = True,
                 start_feeds: bool = True, attach_run: Path | None = None, background_load: bool | None = None) -> None:
        super().__init__()
        self.demo = demo
        self.settings = settings if settings is not None else load_settings()
        problems: list[str] = list(self.settings.problems)
        if keymap is None:
            loaded = keys.load_keys_file(paths.keys_file())
            keymap = loaded.keymap
            problems += loaded.problems
        self.user_keymap = keymap
        self.profile_path = profile_path
        self.session = Session(DeploymentControl(self.post_message), demo=demo)
        if background_load is not None:
            self.session.background_load = background_load
        self.commands = DeploymentCommands(self, self.session)
        self.navigator = Navigator(self, self.session)
        self.startup = Startup(self, self.session, self.commands, demo=demo, gpu_source=gpu_source,
                               gpu_interval_s=self.settings.gpu_interval_s, problems=problems, start_feeds=start_feeds,
                               attach_run=attach_run, offer_reattach=offer_reattach)
        self.session.title_note = lambda: dashboard_note(self)
        problems += install_themes(self, self.settings.theme)

    def get_driver_class(self):  # noqa: ANN201 - Textual's signature
        """Textual's choice, except that its Linux driver becomes the one whose input thread
        sleeps until a key comes (pdtui.ui.quiet_driver)."""
        driver = super().get_driver_class()
        # Compared by name: importing the Linux driver module needs termios (not on Windows).
        if (driver.__module__, driver.__qualname__) == ("textual.drivers.linux_driver", "LinuxDriver"):
            from pdtui.ui.quiet_driver import QuietLinuxDriver

            return QuietLinuxDriver
        return driver

    # What tests, the editor and the benchmarks read: the session's.
    control = property(lambda self: self.session.control)
    gpu_reading = property(lambda self: self.session.gpu_reading)

    @property
    def gpu_feed(self) -> GpuFeed | None:
        return self.startup.gpu_feed

    @property
    def document(self) -> Any:
        return self.session.document

    @document.setter
    def document(self, value: Any) -> None:
        self.session.document = value

    def get_default_screen(self) -> Screen:
        return CockpitScreen(self.session)  # the bottom of the stack: no blank screen first

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.profile_path = self.startup.mount(self.profile_path)
        if self.tour is not None:
            self.tour.start()

    async def on_event(self, event: events.Event) -> None:
        if self.tour is not None and self.tour.takes_over(event):
            return  # the key that ends the tour does nothing else
        await super().on_event(event)

    # -- data in ---------------------------------------------------------------------

    def on_gpu_update(self, message: GpuUpdate) -> None:
        self.session.gpu_reading = message.reading
        self.session.record_gpus(message.reading)
        if self.screen_stack:
            self.screen.post_message(messages.GpuReadingChanged())

    def on_supervisor_event(self, message: SupervisorEvent) -> None:
        if self.screen_stack:  # shutting down: the supervisor can still report after the last screen
            self.commands.supervisor_event(message.event, self.gpu_feed)

    def refresh_dashboard(self) -> None:
        """The profile or the deployment changed: the active screen re-reads the session."""
        if self.screen_stack:
            self.screen.post_message(messages.DeploymentChanged())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker is reported (every worker has exit_on_error=False)."""
        if event.state == WorkerState.ERROR and not self.commands.quitting:
            error = event.worker.error
            self.notify(f"{event.worker.group or event.worker.name} failed: {type(error).__name__}: {error}",
                        severity="error", timeout=12)

    # -- requests from screens (matched on their base class) -------------------------------

    @on(messages.DeploymentRequest)
    def carry_out(self, request: messages.DeploymentRequest) -> None:
        if not self.startup.holds(request):  # a launch waits for the profile still loading
            self.commands.carry_out(request)

    @on(messages.ShowRequest)
    def show(self, request: messages.ShowRequest) -> None:
        self.navigator.show(request)

    # -- app-wide actions (keys and the command palette) ------------------------------------

    def action_help(self) -> None:
        self.navigator.help(self.user_keymap)

    def action_show_dashboard(self) -> None:
        self.navigator.dashboard()

    def action_show_editor(self) -> None:
        self.navigator.editor()

    def action_next_theme(self) -> None:
        next_theme(self)

    def watch_theme(self, _theme: str) -> None:
        follow_theme(self, self.settings)

    def action_launch(self) -> None:
        self.carry_out(messages.LaunchRequested())

    def action_stop(self) -> None:
        self.commands.stop()

    def action_quit_app(self) -> None:
        self.commands.quit()

    async def on_unmount(self) -> None:
        if self.gpu_feed is not None:
            await asyncio.to_thread(self.gpu_feed.stop)
        await self.commands.close()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from pdtui.ui.palette import system_commands

        return system_commands(self, screen)
