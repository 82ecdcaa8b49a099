"""The cockpit, the first screen: GPUs with history, instances with rates and history,
the KV-transfer strip per prefiller -> decoder pair, a log pane, one line of health.

Attributes down: the screen is given the app's `Session` and reads it (status, the
deployment monitor and its store, the GPU reading) when told that something changed
(`DeploymentChanged`, `GpuReadingChanged`). The GPU poll (1 s) is the screen's clock: each
reading repaints everything at once (unchanged cells are not written), and a fallback
tick (every FALLBACK_S) repaints only when no refresh came for that long (a stalled GPU
poll), so an idle cockpit wakes once a second, not once per timer. Widgets are looked up
once (`_one`), not per refresh. Messages up: every action on the
deployment is a request message (pdtui.ui.messages) the app acts on.

Layout: stacked up to 169 columns; from 170 the GPU and instance tables sit side by side
so the log pane gets the height (styles in pdtui/ui/app.tcss, `-wide` / `-short`
breakpoint classes set by Textual from the terminal size).
"""

from __future__ import annotations

import time
from typing import TypeVar

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import MountError, Widget
from textual.widgets import Footer, Static

from pdtui.ui import cockpit_rows
from pdtui.ui import rows as rowfmt
from pdtui.ui.bindings import bindings_for
from pdtui.ui.messages import (BackgroundLoadToggle, DeploymentChanged, GpuReadingChanged, LaunchRequested,
                               RestartPairRequested, RestartRequested, ShowGpu, ShowInstance, ShowObserve, StartInstanceRequested,
                               StopInstanceRequested, StopOrphansRequested, StopRequested)
from pdtui.ui.screens.dashboard_logs import CockpitLogs
from pdtui.ui.session import BACKGROUND_JOB, Session
from pdtui.ui.widgets.diff_table import DiffTable
from pdtui.ui.widgets.status_line import StatusLine

__all__ = ["CockpitScreen", "DashboardScreen", "TitleBar"]

W = TypeVar("W", bound=Widget)
# Longer than the GPU poll's 1 s, so a steady poll always comes first; each tick is a wake-up
# of an idle cockpit, so not much longer than that stall is worth noticing.
FALLBACK_S = 5.0


class TitleBar(StatusLine):
    """One line: app, profile, and a loud SIMULATION marker in demo mode."""


class CockpitScreen(Screen):
    BINDINGS = bindings_for("dashboard")
    AUTO_FOCUS = "#instance-table"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (170, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._kv_key: object = None
        self._gpus_stale = True
        self._last_refresh = 0.0  # monotonic
        self._widgets: dict[str, Widget] = {}
        self._complete = False  # the widgets after the GPU table are mounted
        self._rows_width = 0  # the history width the instance rows were last drawn for

    def compose(self) -> ComposeResult:
        # The first frame: the title and the GPU rows the operator waits for (issue 17). The
        # rest (`_compose_rest`) is mounted right after it: composed here, styling and
        # painting it would hold the GPU rows back by ~20 ms on the 2-core box.
        yield TitleBar(id="title")
        with Horizontal(id="top"):
            with Vertical(id="gpu-box") as gpu_box:
                gpu_box.border_title = "GPUs"
                yield DiffTable(cockpit_rows.GPU_COLUMNS, id="gpu-table")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(FALLBACK_S, self._fallback)
        self.refresh_all()
        self.call_after_refresh(self._compose_rest)

    async def _compose_rest(self) -> None:
        instance_box = Vertical(DiffTable(cockpit_rows.INSTANCE_COLUMNS, id="instance-table"), id="instance-box")
        instance_box.border_title = "Instances"
        rest = [instance_box, Static("", id="kv-strip"), CockpitLogs(id="log-box"), StatusLine("", id="health", markup=False)]
        try:
            await self.query_one("#top").mount(instance_box)
            await self.mount(*rest[1:], before=self.query_one(Footer))
        except (NoMatches, MountError):
            return  # the app is closing before its first screen was complete
        if not all(widget.is_attached for widget in rest):
            return  # the same, while the widgets were being mounted
        self._complete = True
        if self.focused is None:
            self.query_one("#instance-table").focus()  # AUTO_FOCUS found nothing at the first frame
        self.refresh_all()
        self._gpus_stale = True  # side by side (-wide) the GPU box is narrower now: its history too
        self.call_after_refresh(self.refresh_all)

    def on_screen_resume(self) -> None:
        self._gpus_stale = True
        self.refresh_all()

    def on_deployment_changed(self, _message: DeploymentChanged) -> None:
        self.refresh_all()

    def on_gpu_reading_changed(self, _message: GpuReadingChanged) -> None:
        first = self._gpu_table().row_count == 0
        self._gpus_stale = True
        self.refresh_all()
        if first:
            self.call_after_refresh(self._scroll_hints)  # the first rows change the box's height

    def _fallback(self) -> None:
        if time.monotonic() - self._last_refresh >= FALLBACK_S:
            self.refresh_all()

    def _one(self, selector: str, kind: type[W]) -> W:
        """`query_one`, remembered: a query walks the DOM, and refresh_all asks ~10 a second."""
        widget = self._widgets.get(selector)
        if not isinstance(widget, kind) or not widget.is_attached:
            widget = self.query_one(selector, kind)
            self._widgets[selector] = widget
        return widget

    def on_resize(self) -> None:
        self.call_after_refresh(self._scroll_hints)  # the boxes' heights and widths changed

    # --- reading the session -----------------------------------------------------------
    def _instance_table(self) -> DiffTable:
        return self._one("#instance-table", DiffTable)

    def _gpu_table(self) -> DiffTable:
        return self._one("#gpu-table", DiffTable)

    def _logs(self) -> CockpitLogs:
        return self._one("CockpitLogs", CockpitLogs)

    def _width(self, box: str = "#instance-box", fixed: int = cockpit_rows.INSTANCE_FIXED_WIDTH) -> int:
        width = self._one(box, Widget).size.width or self.size.width or 80
        return cockpit_rows.history_width(width - 2, fixed)

    def _instance_rows(self) -> tuple[list[rowfmt.InstanceRowData], str | None, str | None]:
        status = self.session.status()
        if status is not None:
            return rowfmt.rows_from_status(status), status.phase, status.run_name
        profile = self.session.profile()
        if profile is not None:
            from pathlib import Path

            from pdtui.model import render_plan

            return rowfmt.rows_from_plan(render_plan(profile, Path("/nonexistent-preview"))), None, None
        return [], None, None

    def refresh_all(self) -> None:
        self._last_refresh = time.monotonic()
        self._refresh_title()
        rebuilt = False
        if self._gpus_stale:
            self._gpus_stale = False
            rebuilt = self._refresh_gpus()
        if not self._complete:
            return
        found = self._instance_rows()
        table = self._instance_table()
        width = self._width()
        rebuilt = table.set_rows(cockpit_rows.instance_rows(found[0], self.session.store, width)) or rebuilt
        if rebuilt or width != self._rows_width:
            self.call_after_refresh(self._scroll_hints)  # after the new rows are laid out
        else:
            self._scroll_hints()  # the same rows where they were: only a scroll moves the hint
        self._rows_width = width
        self._refresh_health(found)
        monitor = self.session.monitor
        strip = self._one("#kv-strip", Static)
        key, content = cockpit_rows.kv_strip(monitor, strip.size.width or self.size.width)
        if key != self._kv_key:  # a Static update lays the screen out again: only on change
            self._kv_key = key
            strip.update(content)
        self._logs().attach(monitor, self._log_target())

    def _scroll_hints(self) -> None:
        if self.is_attached and self._complete:
            for box, grid in (("#gpu-box", "#gpu-table"), ("#instance-box", "#instance-table")):
                self._scroll_hint(box, grid)
            if self._width() != self._rows_width:
                # The rows were drawn for a box width the layout has since changed (the rest
                # of the cockpit mounting, -wide/-narrow): draw their history for this one.
                self.refresh_all()

    def _scroll_hint(self, box_id: str, table_id: str) -> None:
        """A short box (80×24) shows only some rows: its border says how many are below/above."""
        table = self._one(table_id, DiffTable)
        visible = max(0, table.size.height - (1 if table.show_header else 0))  # rows, less the header
        if not visible:
            return
        top = int(table.scroll_y)
        below = max(0, table.row_count - visible - top)
        parts = ([f"↑{top}"] if top else []) + ([f"↓{below} more"] if below else [])
        hint = " ".join(parts) + " (scroll)" if parts else ""
        box = self._one(box_id, Widget)
        if box.border_subtitle != hint:
            box.border_subtitle = hint

    def _refresh_title(self) -> None:
        session = self.session
        doc = session.document
        status = session.status()
        pending = session.profile_path  # named from the first paint, before pydantic has loaded it
        # A run of another profile than the open file (re-attached): the run's profile names it.
        other_run = status is not None and (doc.get("name") != status.profile if doc is not None else pending is None)
        if other_run:
            name = f"{status.profile} (run {status.run_name})"
        elif doc is not None:
            name = doc.path.name
        elif pending is not None:
            name = pending.name
        else:
            name = "no profile (e: editor, then ctrl+o)"
        marker = "[reverse bold $warning] SIMULATION [/] " if session.demo else ""
        load = ""
        if session.demo:
            job = session.monitor.jobs.get(BACKGROUND_JOB) if session.monitor is not None else None
            running = job is not None and not job.done
            load = f"  demo load {'[b]on[/b]' if session.background_load else 'off'}{' (running)' if running else ''} (b)"
        note = session.title_note()  # e.g. what runs is not what is saved (the app provides it)
        self._one("#title", TitleBar).show(f"{marker}[b]pdtui[/b]  {name}{load}  [dim]? help · ctrl+p commands[/dim]{note}")

    def _refresh_gpus(self) -> bool:
        """Whether the GPU table's rows were rebuilt (a GPU or node came or went)."""
        nodes = self.session.node_gpus
        if nodes is not None:  # a cluster run: each node's GPUs, not this machine's
            width = self._width("#gpu-box", cockpit_rows.GPU_FIXED_WIDTH)
            rows = cockpit_rows.node_gpu_rows(nodes.nodes, nodes.holders, self.session.store, width)
            return self._gpu_table().set_rows(rows)
        reading = self.session.gpu_reading
        if reading is None:
            return False
        holders = rowfmt.gpu_holders(reading.processes)
        width = self._width("#gpu-box", cockpit_rows.GPU_FIXED_WIDTH)
        rows = cockpit_rows.gpu_rows(reading.inventory, holders, self.session.store, width)
        return self._gpu_table().set_rows(rows)

    def _refresh_health(self, found: tuple[list[rowfmt.InstanceRowData], str | None, str | None]) -> None:
        rows, phase, run_name = found
        reading = self.session.gpu_reading
        inventory = reading.inventory if reading is not None else None
        nodes = self.session.node_gpus
        gpu_text = cockpit_rows.nodes_summary(nodes.nodes) if nodes is not None else None
        self._one("#health", StatusLine).show(rowfmt.health_summary(rows, phase, inventory, run_name, gpu_text))

    def _log_target(self) -> str | None:
        selected = self.selected_instance()
        monitor = self.session.monitor
        if monitor is None:
            return None
        if selected in monitor.followers():
            return selected
        names = monitor.instance_names(("decoder",)) or list(monitor.followers())
        return names[0] if names else None

    def selected_instance(self) -> str | None:
        return self._instance_table().selected_key() if self._complete else None

    def on_data_table_row_highlighted(self, event: DiffTable.RowHighlighted) -> None:
        if event.data_table.id == "instance-table" and event.row_key.value:
            logs = self.query_one(CockpitLogs)
            if not logs.all:
                logs.follow(event.row_key.value)

    def on_data_table_row_selected(self, event: DiffTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id == "instance-table" and key:
            self.post_message(ShowInstance(key))
        elif event.data_table.id == "gpu-table" and key and key.startswith("gpu-"):
            self.post_message(ShowGpu(int(key.removeprefix("gpu-"))))

    # --- actions: requests up ------------------------------------------------------------
    def action_launch(self) -> None:
        self.post_message(LaunchRequested())

    def action_stop(self) -> None:
        self.post_message(StopRequested())

    def action_stop_instance(self) -> None:
        self.post_message(StopInstanceRequested(self.selected_instance()))

    def action_stop_orphans(self) -> None:
        self.post_message(StopOrphansRequested())

    def action_start_instance(self) -> None:
        self.post_message(StartInstanceRequested(self.selected_instance()))

    def action_restart_instance(self) -> None:
        self.post_message(RestartRequested(self.selected_instance()))

    def action_restart_pair(self) -> None:
        self.post_message(RestartPairRequested(self.selected_instance()))

    def action_details(self) -> None:
        gpu = self.query_one("#gpu-table", DiffTable)
        if gpu.has_focus:  # enter acts on the focused table
            key = gpu.selected_key()
            if key and key.startswith("gpu-"):
                self.post_message(ShowGpu(int(key.removeprefix("gpu-"))))
            return
        name = self.selected_instance()
        if name:
            self.post_message(ShowInstance(name))

    def action_observe(self, tab: str | None = None) -> None:
        self.post_message(ShowObserve(tab or self.selected_instance()))

    def action_toggle_background_load(self) -> None:
        self.post_message(BackgroundLoadToggle())

    def action_toggle_all_logs(self) -> None:
        if self._complete:
            self.query_one(CockpitLogs).toggle_all(self.selected_instance())

    def action_focus_next_table(self) -> None:
        if not self._complete:
            return
        gpu = self.query_one("#gpu-table", DiffTable)
        inst = self.query_one("#instance-table", DiffTable)
        pane = self.query_one(CockpitLogs).pane
        if inst.has_focus and pane is not None:
            pane.focus()
        elif gpu.has_focus:
            inst.focus()
        else:
            gpu.focus()


DashboardScreen = CockpitScreen  # the name the first screen had before it became the cockpit
