"""The pdtui Textual app: wires the GPU feed, the session and the screens.

Attributes down, messages up: screens are given the `Session` (deployment control, the
deployment's monitor and history store, GPU reading, profile document) and post typed
requests (pdtui.ui.messages) that `DeploymentCommands` carries out. The app scrapes
nothing and fills no table: telemetry is the deployment monitor's, rendering the
screens'. Worker failures are reported in one place (`on_worker_state_changed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from pdtui.ui import keys, messages, paths
from pdtui.ui.bindings import bindings_for
from pdtui.ui.commands import DeploymentCommands
from pdtui.ui.control import DeploymentControl, SupervisorEvent
from pdtui.ui.drift import dashboard_note
from pdtui.ui.screens.dashboard import CockpitScreen
from pdtui.ui.session import Session
from pdtui.ui.settings import UiSettings, load_settings, save_theme
from pdtui.ui.themes import ansi_palette, install_themes, theme_names

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
        self._startup_problems: list[str] = list(self.settings.problems)
        if keymap is None:
            loaded = keys.load_keys_file(paths.keys_file())
            keymap = loaded.keymap
            self._startup_problems += loaded.problems
        self.user_keymap = keymap
        self.profile_path = profile_path
        self.session = Session(DeploymentControl(self.post_message), demo=demo)
        if background_load is not None:
            self.session.background_load = background_load
        self.commands = DeploymentCommands(self, self.session)
        self.session.title_note = lambda: dashboard_note(self)
        self._gpu_source = gpu_source
        self.gpu_feed: GpuFeed | None = None
        self._offer_reattach = offer_reattach
        self._start_feeds = start_feeds
        self._attach_run = attach_run  # re-attach to this run at start, without asking
        self.first_screen_at: float | None = None
        self._startup_problems += install_themes(self, self.settings.theme)

    # What tests, the editor and the benchmarks read: the session's.
    control = property(lambda self: self.session.control)
    gpu_reading = property(lambda self: self.session.gpu_reading)

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
        if self.profile_path is None and self.demo and self._attach_run is None:  # a re-attached run names its own
            from pdtui.model.presets import resolve_profile_path  # standard library only

            self.profile_path = resolve_profile_path("demo")
        self.session.profile_path = self.profile_path  # the title names it from the first paint
        self._launch_after_load = False  # `u` pressed while the profile still loads: launch once it is
        self._profile_loading = self.profile_path is not None
        if self._start_feeds:
            self._start_gpu_feed()  # the GPU rows are what the operator waits for: first poll now
        self.call_after_refresh(lambda: self.run_worker(self._after_first_paint(), group="startup", exit_on_error=False))
        if self.tour is not None:
            self.tour.start()

    async def on_event(self, event: events.Event) -> None:
        if self.tour is not None and self.tour.takes_over(event):
            return  # the key that ends the tour does nothing else
        await super().on_event(event)

    async def _after_first_paint(self) -> None:
        """Paint first (with the GPU rows of the first poll), then load the profile (pydantic
        is slow to import: on a thread, it would still slow the paint down) and the rest."""
        self.first_screen_at = time.monotonic()
        if self._start_feeds:
            await self._first_gpu_rows_painted()
        try:
            if self.profile_path is not None:
                self._startup_problems += await asyncio.to_thread(self.session.open_profile, self.profile_path)
        finally:
            self._profile_loading = False
        if self.profile_path is not None and self.screen_stack:
            self.screen.post_message(messages.ProfileChanged())  # an editor opened meanwhile shows it
        if self._launch_after_load:
            self.commands.launch()
        self.refresh_dashboard()
        for problem in self._startup_problems:
            self.notify(problem, severity="warning", timeout=10)
        if not self._start_feeds:
            return
        if self._attach_run is not None:
            self.commands.attach(self._attach_run)
        elif self._offer_reattach:
            self.run_worker(self.commands.look_for_detached_runs, thread=True, group="reattach", exit_on_error=False)

    def _start_gpu_feed(self) -> None:
        from pdtui.ui import gpu_feed

        source = self._gpu_source or (gpu_feed.demo_source() if self.demo else gpu_feed.nvml_source())
        self._gpu_source = source
        self.gpu_feed = gpu_feed.GpuFeed(source, self.post_message, self.settings.gpu_interval_s)
        self.gpu_feed.start()

    # -- data in ---------------------------------------------------------------------

    async def _first_gpu_rows_painted(self, timeout_s: float = 2.0) -> None:
        """Until the first GPU reading has been on screen (bounded: a slow driver must not
        hold back the profile)."""
        deadline = time.monotonic() + timeout_s
        while self.session.gpu_reading is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        painted = asyncio.Event()
        self.call_after_refresh(painted.set)
        try:
            await asyncio.wait_for(painted.wait(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass

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

    # -- requests from screens -----------------------------------------------------------

    def on_launch_requested(self, _message: messages.LaunchRequested) -> None:
        if self._profile_loading:  # the GPU rows come before the profile: wait for it, then launch
            self._launch_after_load = True
            return
        self.commands.launch()

    def on_stop_requested(self, _message: messages.StopRequested) -> None:
        self.commands.stop()

    def on_stop_instance_requested(self, message: messages.StopInstanceRequested) -> None:
        self.commands.stop_instance(message.name)

    def on_stop_orphans_requested(self, _message: messages.StopOrphansRequested) -> None:
        self.commands.stop_orphans()

    def on_start_instance_requested(self, message: messages.StartInstanceRequested) -> None:
        self.commands.start_instance(message.name)

    def on_restart_requested(self, message: messages.RestartRequested) -> None:
        self.commands.restart(message.name)

    def on_restart_pair_requested(self, message: messages.RestartPairRequested) -> None:
        self.commands.restart_pair(message.name)

    def on_background_load_toggle(self, _message: messages.BackgroundLoadToggle) -> None:
        self.commands.toggle_background_load()

    def on_show_gpu(self, message: messages.ShowGpu) -> None:
        from pdtui.ui.rows import gpu_detail_lines
        from pdtui.ui.screens.dialogs import MessageScreen

        reading = self.session.gpu_reading
        gpu = next((g for g in reading.inventory.gpus if g.index == message.index), None) if reading else None
        if gpu is not None and reading is not None:
            self.push_screen(MessageScreen(f"GPU {gpu.index}: processes", gpu_detail_lines(gpu, reading.processes)))

    def on_show_instance(self, message: messages.ShowInstance) -> None:
        from pdtui.ui.screens.instance import InstanceScreen

        self.push_screen(InstanceScreen(message.name, self.session))

    def on_show_observe(self, message: messages.ShowObserve) -> None:
        from pdtui.ui.observe import ObserveScreen

        if self.session.monitor is None:
            self.notify("Nothing is running: launch the deployment first (u on the cockpit).", severity="warning")
            return
        self.push_screen(ObserveScreen(self.session.monitor, initial=message.tab))

    # -- app-wide actions ----------------------------------------------------------------

    def action_help(self) -> None:
        from pdtui.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.user_keymap))

    def action_show_dashboard(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, CockpitScreen):
            self.pop_screen()

    def action_show_editor(self) -> None:
        from pdtui.ui.screens.editor import EditorScreen

        if isinstance(self.screen, EditorScreen):
            return
        self.action_show_dashboard()
        if "editor" not in self._installed_screens:
            self.install_screen(EditorScreen(), name="editor")
        self.push_screen("editor")

    def watch_theme(self, theme: str) -> None:
        """Terminal colour names in cells take the theme's colours (readable under NO_COLOR);
        an operator's pick (not the one made from the settings file) is remembered."""
        palette = ansi_palette(self.current_theme)
        if self.current_theme.dark:
            self.ansi_theme_dark = palette
        else:
            self.ansi_theme_light = palette
        if self.is_running and theme != self.settings.theme:
            self.settings.theme = theme
            self.run_worker(self._remember_theme, thread=True, group="settings", exit_on_error=False)

    def _remember_theme(self) -> None:
        try:
            notice = save_theme(self.theme)  # the latest pick, whichever worker gets here last
        except OSError as exc:
            notice = f"theme not remembered: {exc}"
        if notice:
            self.call_from_thread(self.notify, notice, severity="warning", timeout=10)

    def action_next_theme(self) -> None:
        names = theme_names(self) or list(self.available_themes)
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def _restart(self, name: str) -> None:
        """Restart as it runs, without asking (pdtui.ui.drift's "as it runs" answer)."""
        self.commands.restart_now(name)

    def action_launch(self) -> None:
        self.commands.launch()

    def action_stop(self) -> None:
        self.commands.stop()

    def action_quit_app(self) -> None:
        self.commands.quit()

    async def on_unmount(self) -> None:
        if self.gpu_feed is not None:
            await asyncio.to_thread(self.gpu_feed.stop)
        await self.commands.close()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Launch deployment", "Start the proxy and every instance", self.action_launch)
        yield SystemCommand("Stop deployment", "Stop every process (asks first)", self.action_stop)
        yield SystemCommand("Cockpit", "GPUs, instances, KV transfer, logs", self.action_show_dashboard)
        yield SystemCommand("Deployment editor", "Edit the profile: instances, GPUs, ports", self.action_show_editor)
        yield SystemCommand("Help: keys", "Every key binding", self.action_help)
        yield SystemCommand("Quit", "Quit (asks whether to stop or detach a running deployment)", self.action_quit_app)
        for name in theme_names(self):
            yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme", lambda n=name: setattr(self, "theme", n))
        handler = getattr(screen, "palette_commands", None)
        if handler is not None:
            yield from handler()
