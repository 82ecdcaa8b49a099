"""The pdtui Textual app: wires the GPU feed, the deployment control and the screens.

Threads: the GPU poller (NVML / simulated box + psutil) and the supervisor's own threads
post messages here; /metrics scrapes run as one async worker at a time. Nothing blocking
runs on the event loop: every call into the runtime that may touch files or processes
goes through `asyncio.to_thread` or returns a future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from pdtui.ui import keys, paths
from pdtui.ui import rows as rowfmt
from pdtui.ui.bindings import bindings_for
from pdtui.ui.control import DeploymentControl, SupervisorEvent, detached_runs
from pdtui.ui.screens.dashboard import DashboardScreen, TitleBar
from pdtui.ui.settings import UiSettings, load_settings, save_theme
from pdtui.ui.themes import DEFAULT_THEME, ansi_palette, load_themes
from pdtui.ui.widgets.diff_table import DiffTable
from pdtui.ui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    # Imported where used instead: the GPU layer, the feed and the dialogs are not
    # needed for the first frame, and importing them is a visible part of start-up.
    from pdtui.gpus.source import GpuSource
    from pdtui.ui.gpu_feed import GpuFeed, GpuReading, GpuUpdate

METRICS_TIMEOUT_S = 2.0
METRICS_EVERY_TICKS = 2  # /metrics every other status tick: queue depths need no 1 Hz
# The instances table shows only these logical metrics (pdtui.telemetry.metrics aliases).
DASHBOARD_METRICS = ("running", "waiting", "kv_cache_usage")


def dashboard_families() -> tuple[str, ...]:
    """Every spelling of the families the dashboard shows: the scrape's parser keeps only
    lines starting with one of these and skips the rest of a ~50 KB /metrics body (about
    a tenth of the cost of parsing all of vllm:*). Screens that show every metric have
    their own scraper."""
    from pdtui.telemetry.metrics import METRIC_ALIASES

    return tuple(name for key in DASHBOARD_METRICS for name in METRIC_ALIASES[key])


class PdtuiApp(App):
    TITLE = "pdtui"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings_for("app") + [Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True)]
    # Only what the operator asked for repaints: no animations, no cursor blink churn.
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        profile_path: Path | None = None,
        *,
        demo: bool = False,
        gpu_source: GpuSource | None = None,
        settings: UiSettings | None = None,
        keymap: dict[str, str] | None = None,
        offer_reattach: bool = True,
        start_feeds: bool = True,
        attach_run: Path | None = None,
    ) -> None:
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
        self.document: Any = None  # pdtui.model.document.ProfileDocument, loaded after the first paint
        self._gpu_source = gpu_source
        self.gpu_feed: GpuFeed | None = None
        self.gpu_reading: GpuReading | None = None
        self.control = DeploymentControl(self.post_message)
        self.metrics: dict[str, rowfmt.InstanceMetrics] = {}
        self._metrics_busy = False
        self._ticks = 0
        self._offer_reattach = offer_reattach
        self._start_feeds = start_feeds
        self._attach_run = attach_run  # re-attach to this run at start, without asking
        self._http: Any = None
        self.first_screen_at: float | None = None
        self._quitting = False
        self._apply_theme_before_first_parse()

    # -- start-up --------------------------------------------------------------------

    def _apply_theme_before_first_parse(self) -> None:
        """Register the theme files and select the configured theme now, before Textual
        reads any CSS: setting `App.theme` once the app runs re-parses every stylesheet
        and restyles every widget, which cost the first frame tens of ms."""
        loaded = load_themes()
        self._startup_problems += loaded.problems
        for theme in loaded.themes.values():
            self.register_theme(theme)
        wanted = self.settings.theme
        if wanted not in self.available_themes:
            self._startup_problems.append(f"theme {wanted!r} not found; available: {', '.join(self.theme_names())}")
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        # Its watcher runs here too (classes, ANSI filter) but nothing is parsed yet;
        # the CSS refresh it queues would parse everything twice, so the variables are
        # set now and that refresh finds nothing left to do.
        self.theme = wanted
        self.stylesheet.set_variables(self.get_css_variables())

    def get_default_screen(self) -> Screen:
        # The dashboard is the bottom of the stack: no blank default screen is composed,
        # painted and then covered on the way to the first frame.
        return DashboardScreen()

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        # Paint first, then load the profile (pydantic and the model's checks take a few
        # hundred ms to import) and start the feeds: the operator sees a screen at once.
        self.call_after_refresh(self._after_first_paint)

    @work(group="startup", exit_on_error=False)
    async def _after_first_paint(self) -> None:
        self.first_screen_at = time.monotonic()
        await asyncio.to_thread(self._open_initial_profile)
        self.refresh_dashboard()
        for problem in self._startup_problems:
            self.notify(problem, severity="warning", timeout=10)
        if self._start_feeds:
            self._start_gpu_feed()
            self.set_interval(self.settings.status_interval_s, self._tick)
            if self._attach_run is not None:
                self._attach(self._attach_run)
            elif self._offer_reattach:
                self._look_for_detached_runs()

    def _open_initial_profile(self) -> None:
        """Runs on a thread: reading and validating the profile must not hold the loop."""
        from pdtui.model.presets import resolve_profile_path
        from pdtui.model.document import ProfileDocument

        if self.profile_path is None:
            self.profile_path = resolve_profile_path("demo") if self.demo else None
        if self.profile_path is None:
            return
        try:
            self.document = ProfileDocument.open(self.profile_path)
        except OSError as exc:
            self._startup_problems.append(f"cannot open profile {self.profile_path}: {exc.strerror or exc}")
            self.document = None
            return
        if self.document.load_error:
            self._startup_problems.append(self.document.load_error)

    def _start_gpu_feed(self) -> None:
        from pdtui.ui import gpu_feed
        from pdtui.ui.gpu_feed import GpuFeed

        source = self._gpu_source
        if source is None:
            source = gpu_feed.demo_source() if self.demo else gpu_feed.nvml_source()
        self._gpu_source = source
        self.gpu_feed = GpuFeed(source, self.post_message, self.settings.gpu_interval_s)
        self.gpu_feed.start()

    @work(thread=True, group="reattach", exit_on_error=False)
    def _look_for_detached_runs(self) -> None:
        try:
            runs = detached_runs()
        except Exception as exc:  # a broken runs dir must not stop the app
            self.call_from_thread(self.notify, f"could not list detached runs: {exc}", severity="warning")
            return
        if runs:
            self.call_from_thread(self._offer_attach, runs[0])

    def _offer_attach(self, run) -> None:
        from pdtui.ui.screens.dialogs import ChoiceScreen

        if self.control.active:
            return

        def chosen(answer: str | None) -> None:
            if answer == "attach":
                self._attach(run.path)

        self.push_screen(
            ChoiceScreen(
                f"A deployment is still running from an earlier session:\n{run.name} (profile {run.profile})\n{run.path}",
                [("attach", "Re-attach"), ("cancel", "Not now")],
                title="Detached run",
            ),
            chosen,
        )

    @work(group="control", exclusive=True, exit_on_error=False)
    async def _attach(self, run_dir: Path) -> None:
        try:
            await asyncio.to_thread(self.control.attach_blocking, run_dir)
        except Exception as exc:
            self.notify(f"cannot re-attach to {run_dir}: {exc}", severity="error", timeout=10)
            return
        self._deployment_changed()
        self.notify(f"re-attached to {run_dir.name}")

    # -- data in ---------------------------------------------------------------------

    def on_gpu_update(self, message: GpuUpdate) -> None:
        self.gpu_reading = message.reading
        if isinstance(self.screen, DashboardScreen):
            self._refresh_gpu_table(self.screen)
        refresh = getattr(self.screen, "on_gpu_reading", None)
        if refresh is not None:
            refresh(message.reading)

    def on_supervisor_event(self, message: SupervisorEvent) -> None:
        from pdtui.runtime import DeploymentEvent, LogLines

        if not self.screen_stack:
            return  # shutting down: the supervisor can still report after the last screen went
        event = message.event
        if isinstance(event, LogLines):
            handler = getattr(self.screen, "on_log_lines", None)
            if handler is not None:
                handler(event)
            return
        if isinstance(event, DeploymentEvent):
            severity = "error" if event.kind in ("failed", "instance_crashed", "preflight_failed") else "information"
            self.notify(event.message, severity=severity, timeout=8)
        self._deployment_changed()

    def _deployment_changed(self) -> None:
        if self.gpu_feed is not None:
            self.gpu_feed.own_pids = self.control.own_pids()
            set_dir = getattr(self.gpu_feed.source, "set_sim_gpu_dir", None)
            if set_dir is not None and self.control.active:
                set_dir(self.control.sim_gpu_dir())
        self.refresh_dashboard()
        handler = getattr(self.screen, "on_status", None)
        if handler is not None:
            handler(self.control.status())

    def _tick(self) -> None:
        """Once per status interval: uptimes move, and ready engines get scraped."""
        if not self.control.active:
            return
        if isinstance(self.screen, DashboardScreen):
            self._refresh_instances(self.screen)
        handler = getattr(self.screen, "on_status", None)
        if handler is not None:
            handler(self.control.status())
        self._ticks += 1
        if not self._metrics_busy and self._ticks % METRICS_EVERY_TICKS == 0:
            self._metrics_busy = True  # never two scrapes of the same kind at once
            self._scrape_metrics()

    @work(group="metrics", exit_on_error=False)
    async def _scrape_metrics(self) -> None:
        try:
            status = self.control.status()
            if status is None:
                return
            ready = [i for i in status.instances if i.kind != "proxy" and str(i.state) == "ready" and i.port]
            if not ready:
                return
            import aiohttp

            from pdtui.telemetry.scrape import ScrapeTarget, scrape_once

            if self._http is None:
                self._http = aiohttp.ClientSession()
            host = "127.0.0.1"
            if self.document is not None and self.document.validation.profile is not None:
                host = self.document.validation.profile.host
            families = dashboard_families()
            targets = [ScrapeTarget(i.name, f"http://{host}:{i.port}/metrics", "vllm", i.name, families) for i in ready]
            results = await asyncio.gather(*(scrape_once(self._http, t, METRICS_TIMEOUT_S) for t in targets))
            changed = False
            for result in results:
                snap = result.snapshot
                if snap is None:
                    metrics = rowfmt.InstanceMetrics(error=result.error)
                else:
                    metrics = rowfmt.InstanceMetrics(
                        running=snap.value("running"), waiting=snap.value("waiting"), kv_cache_usage=snap.value("kv_cache_usage")
                    )
                if self.metrics.get(result.target.name) != metrics:
                    self.metrics[result.target.name] = metrics
                    changed = True
            if changed and isinstance(self.screen, DashboardScreen):
                self._refresh_instances(self.screen)
        finally:
            self._metrics_busy = False

    # -- rendering -------------------------------------------------------------------

    def instance_rows(self) -> tuple[list[rowfmt.InstanceRowData], str | None, str | None]:
        status = self.control.status()
        if status is not None:
            return rowfmt.rows_from_status(status), status.phase, status.run_name
        if self.document is not None and self.document.validation.ok:
            from pdtui.model import render_plan

            plan = render_plan(self.document.validation.profile, Path("/nonexistent-preview"))
            return rowfmt.rows_from_plan(plan), None, None
        return [], None, None

    def refresh_dashboard(self) -> None:
        if not self.screen_stack:
            return  # shutting down: supervisor events can still arrive after the last screen went
        screen = self.screen
        if not isinstance(screen, DashboardScreen):
            return
        title = screen.query_one("#title", TitleBar)
        name = self.document.path.name if self.document is not None else "no profile (ctrl+o in the editor)"
        marker = "[reverse bold $warning] SIMULATION [/] " if self.demo else ""
        from pdtui.ui.drift import dashboard_note

        title.show(f"{marker}[b]pdtui[/b]  {name}  [dim]? help · ctrl+p commands[/dim]{dashboard_note(self)}")
        self._refresh_gpu_table(screen)
        self._refresh_instances(screen)

    def _refresh_gpu_table(self, screen: DashboardScreen) -> None:
        reading = self.gpu_reading
        if reading is None:
            return
        holders = rowfmt.gpu_holders(reading.processes)
        screen.query_one("#gpu-table", DiffTable).set_rows(rowfmt.gpu_rows(reading.inventory, holders))
        self._refresh_health(screen, self.instance_rows())

    def _refresh_instances(self, screen: DashboardScreen) -> None:
        found = self.instance_rows()
        table_rows = [(r.name, rowfmt.instance_row(r, self.metrics.get(r.name))) for r in found[0]]
        screen.query_one("#instance-table", DiffTable).set_rows(table_rows)
        self._refresh_health(screen, found)

    def _refresh_health(self, screen: DashboardScreen, found: tuple[list[rowfmt.InstanceRowData], str | None, str | None]) -> None:
        rows, phase, run_name = found
        inventory = self.gpu_reading.inventory if self.gpu_reading else None
        screen.query_one("#health", StatusLine).show(rowfmt.health_summary(rows, phase, inventory, run_name))

    # -- actions -----------------------------------------------------------------------

    def action_help(self) -> None:
        from pdtui.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.user_keymap))

    def action_show_dashboard(self) -> None:
        while len(self.screen_stack) > 1 and not isinstance(self.screen, DashboardScreen):
            self.pop_screen()

    def action_show_editor(self) -> None:
        from pdtui.ui.screens.editor import EditorScreen

        if isinstance(self.screen, EditorScreen):
            return
        self.action_show_dashboard()
        if "editor" not in self._installed_screens:
            self.install_screen(EditorScreen(), name="editor")
        self.push_screen("editor")

    def show_instance(self, name: str) -> None:
        from pdtui.ui.screens.instance import InstanceScreen

        self.push_screen(InstanceScreen(name))

    def theme_names(self) -> list[str]:
        ours = [n for n in self.available_themes if n.startswith("pdtui-")]
        user = [n for n in self.available_themes if n not in ours and not n.startswith("textual-") and n in load_themes().themes]
        return sorted(ours) + sorted(user)

    def watch_theme(self, theme: str) -> None:
        # Terminal colour names in table cells (`red` for a full GPU) take the theme's
        # colours, so they stay readable on its backgrounds and under NO_COLOR.
        if self.current_theme.dark:
            self.ansi_theme_dark = ansi_palette(self.current_theme)
        else:
            self.ansi_theme_light = ansi_palette(self.current_theme)
        # Remember the operator's pick (T, the palette) for the next start; the selection
        # made in __init__ from the settings file is not a pick and writes nothing.
        if self.is_running and theme != self.settings.theme:
            self.settings.theme = theme
            self._remember_theme()

    @work(thread=True, group="settings", exit_on_error=False)
    def _remember_theme(self) -> None:
        try:
            notice = save_theme(self.theme)  # the latest pick, whichever worker gets here last
        except OSError as exc:
            self.call_from_thread(self.notify, f"theme not remembered: {exc}", severity="warning")
            return
        if notice:
            self.call_from_thread(self.notify, notice, severity="warning", timeout=10)

    def action_next_theme(self) -> None:
        names = self.theme_names() or list(self.available_themes)
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_launch(self) -> None:
        from pdtui.ui.screens.dialogs import MessageScreen

        if self.control.running():
            self.notify("a deployment is already running (s to stop it)", severity="warning")
            return
        if self.document is None:
            self.notify("no profile loaded: open one in the editor (e, then ctrl+o)", severity="error")
            return
        validation = self.document.revalidate()
        if not validation.ok:
            lines = [p.format(self.document.path.name) for p in validation.errors]
            self.push_screen(MessageScreen("Launch blocked: the profile has errors", lines))
            return
        self._launch(validation.profile)

    @work(group="control", exclusive=True, exit_on_error=False)
    async def _launch(self, profile) -> None:
        from pdtui.model.hostchecks import check_host
        from pdtui.ui.screens.dialogs import MessageScreen

        reading = self.gpu_reading
        gpu_count = None
        gpu_error = None
        if reading is not None:
            gpu_error = reading.inventory.error
            gpu_count = None if gpu_error else len(reading.inventory.gpus)
        problems = await asyncio.to_thread(check_host, profile, gpu_count, gpu_error=gpu_error)
        errors = [p for p in problems if p.is_error]
        if errors:
            name = self.document.path.name if self.document else ""
            self.push_screen(MessageScreen("Launch blocked on this machine", [p.format(name) for p in errors]))
            return
        if self.control.active:
            await asyncio.to_thread(self.control.close_blocking)
        try:
            await asyncio.to_thread(self.control.launch_blocking, profile)
        except Exception as exc:
            self.push_screen(MessageScreen("Launch failed", [f"{type(exc).__name__}: {exc}"]))
            return
        self.metrics.clear()
        self._deployment_changed()
        self.notify(f"launching {profile.name}…", timeout=3)
        try:
            ok = await self.control.start()
        except Exception as exc:
            self.push_screen(MessageScreen("Launch failed", [f"{type(exc).__name__}: {exc}"]))
            self._deployment_changed()
            return
        self._deployment_changed()
        if ok:
            self.notify(f"{profile.name}: all instances ready", timeout=5)
        else:
            status = self.control.status()
            reasons = [f"{i.name}: {i.reason}" for i in status.instances if i.reason] if status else []
            self.notify("launch failed: " + ("; ".join(reasons) or "see the instance details"), severity="error", timeout=15)

    def action_stop(self) -> None:
        from pdtui.ui.screens.dialogs import confirm

        if not self.control.running():
            self.notify("nothing is running", severity="warning")
            return
        status = self.control.status()

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._stop()

        self.push_screen(confirm(f"Stop every process of {status.run_name}?", "Stop", "Stop deployment"), chosen)

    @work(group="control", exclusive=True, exit_on_error=False)
    async def _stop(self) -> None:
        try:
            await self.control.stop()
        except Exception as exc:
            self.notify(f"stop failed: {exc}", severity="error", timeout=10)
        self._deployment_changed()
        self.notify("deployment stopped", timeout=3)

    def action_restart_instance(self, name: str | None = None) -> None:
        from pdtui.ui.screens.dialogs import confirm

        if not self.control.active or not name:
            self.notify("select a running instance to restart", severity="warning")
            return
        from pdtui.ui.drift import offer_restart

        if offer_restart(self, name):  # it runs with other settings than the saved profile's
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._restart(name)

        self.push_screen(confirm(f"Restart {name}? Requests it is serving will fail.", "Restart", "Restart"), chosen)

    @work(group="restart", exit_on_error=False)
    async def _restart(self, name: str) -> None:
        try:
            ok = await self.control.restart(name)
        except Exception as exc:
            self.notify(f"restart of {name} failed: {exc}", severity="error", timeout=10)
            return
        self.notify(f"{name} {'ready again' if ok else 'did not come back'}", severity="information" if ok else "error")

    def action_restart_pair(self, name: str | None = None) -> None:
        """Restart the selected instance together with its counterpart of the same rank
        (prefiller i with decoder i), as a stuck KV transfer usually needs both."""
        from pdtui.ui.screens.dialogs import confirm

        status = self.control.status()
        if status is None or not name:
            self.notify("select a running prefiller or decoder to restart its P/D pair", severity="warning")
            return
        prefillers = [i.name for i in status.instances if i.kind == "prefiller"]
        decoders = [i.name for i in status.instances if i.kind == "decoder"]
        if name in prefillers:
            p, d = name, decoders[min(prefillers.index(name), len(decoders) - 1)]
        elif name in decoders:
            d, p = name, prefillers[min(decoders.index(name), len(prefillers) - 1)]
        else:
            self.notify("the P/D pair restart needs a prefiller or decoder selected", severity="warning")
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._restart_pair(p, d)

        self.push_screen(confirm(f"Restart the pair {p} + {d}?", "Restart", "Restart P/D pair"), chosen)

    @work(group="restart", exit_on_error=False)
    async def _restart_pair(self, prefiller: str, decoder: str) -> None:
        try:
            ok = await self.control.restart_pair(prefiller, decoder)
        except Exception as exc:
            self.notify(f"pair restart failed: {exc}", severity="error", timeout=10)
            return
        self.notify(f"{prefiller} + {decoder} {'ready again' if ok else 'did not come back'}")

    def action_quit_app(self) -> None:
        from pdtui.ui.screens.dialogs import ChoiceScreen, confirm

        if self._quitting:
            return
        if self.document is not None and self.document.dirty and not self.control.running():
            def chosen_unsaved(answer: str | None) -> None:
                if answer == "yes":
                    self._finish()

            self.push_screen(confirm(f"{self.document.path.name} has unsaved changes. Quit anyway?", "Quit", "Unsaved changes"), chosen_unsaved)
            return
        if not self.control.running():
            self._finish()
            return

        def chosen(answer: str | None) -> None:
            if answer in ("stop", "detach"):
                self._finish(answer)

        self.push_screen(
            ChoiceScreen(
                "The deployment is still running. Stop it, or leave it running (detach) and re-attach later?",
                [("detach", "Detach"), ("stop", "Stop"), ("cancel", "Cancel")],
                title="Quit",
            ),
            chosen,
        )

    @work(group="quit", exit_on_error=False)
    async def _finish(self, how: str = "stop") -> None:
        self._quitting = True
        if self.control.active:
            try:
                if how == "detach":
                    self.control.detach()
                else:
                    await self.control.stop()
                await asyncio.to_thread(self.control.close_blocking)
            except Exception as exc:
                self.notify(f"{how} failed: {exc}", severity="error", timeout=10)
                self._quitting = False
                return
        self.exit()

    async def on_unmount(self) -> None:
        if self.gpu_feed is not None:
            await asyncio.to_thread(self.gpu_feed.stop)
        if self._http is not None:
            await self._http.close()
        if self.control.active:
            await asyncio.to_thread(self.control.close_blocking)

    # -- command palette ---------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("Launch deployment", "Start the proxy and every instance", self.action_launch)
        yield SystemCommand("Stop deployment", "Stop every process (asks first)", self.action_stop)
        yield SystemCommand("Dashboard", "GPUs, instances, health", self.action_show_dashboard)
        yield SystemCommand("Deployment editor", "Edit the profile: instances, GPUs, ports", self.action_show_editor)
        yield SystemCommand("Help: keys", "Every key binding", self.action_help)
        yield SystemCommand("Quit", "Quit (asks whether to stop or detach a running deployment)", self.action_quit_app)
        for name in self.theme_names():
            yield SystemCommand(f"Theme: {name}", f"Switch to the {name} theme", lambda n=name: setattr(self, "theme", n))
        handler = getattr(screen, "palette_commands", None)
        if handler is not None:
            yield from handler()
