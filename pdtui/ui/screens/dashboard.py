"""The dashboard: GPUs, instances (with the proxy), and one line of health."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer

from pdtui.ui import rows as rowfmt
from pdtui.ui.bindings import bindings_for
from pdtui.ui.widgets.diff_table import DiffTable
from pdtui.ui.widgets.status_line import StatusLine


class TitleBar(StatusLine):
    """One line: app, profile, and a loud SIMULATION marker in demo mode."""

    DEFAULT_CSS = """
    TitleBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """


class DashboardScreen(Screen):
    BINDINGS = bindings_for("dashboard")
    AUTO_FOCUS = "#instance-table"
    DEFAULT_CSS = """
    DashboardScreen #gpu-box { height: auto; max-height: 60%; border: round $primary 60%; }
    DashboardScreen #gpu-box:focus-within { border: round $primary; }
    DashboardScreen #instance-box { height: 1fr; min-height: 5; border: round $primary 60%; }
    DashboardScreen #instance-box:focus-within { border: round $primary; }
    DashboardScreen #health { height: 1; padding: 0 1; background: $boost; }
    DashboardScreen #gpu-table, DashboardScreen #instance-table { height: auto; max-height: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield TitleBar(id="title")
        with Vertical(id="gpu-box") as gpu_box:
            gpu_box.border_title = "GPUs"
            yield DiffTable(rowfmt.GPU_COLUMNS, id="gpu-table")
        with Vertical(id="instance-box") as instance_box:
            instance_box.border_title = "Instances"
            yield DiffTable(rowfmt.INSTANCE_COLUMNS, id="instance-table")
        yield StatusLine("", id="health", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.app.refresh_dashboard()  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        self.app.refresh_dashboard()  # type: ignore[attr-defined]

    def selected_instance(self) -> str | None:
        key = self.query_one("#instance-table", DiffTable).selected_key()
        return key

    # Actions live on the app (they are also palette commands); these forward.
    def action_launch(self) -> None:
        self.app.action_launch()  # type: ignore[attr-defined]

    def action_stop(self) -> None:
        self.app.action_stop()  # type: ignore[attr-defined]

    def action_restart_instance(self) -> None:
        self.app.action_restart_instance(self.selected_instance())  # type: ignore[attr-defined]

    def action_restart_pair(self) -> None:
        self.app.action_restart_pair(self.selected_instance())  # type: ignore[attr-defined]

    def action_details(self) -> None:
        name = self.selected_instance()
        if name:
            self.app.show_instance(name)  # type: ignore[attr-defined]

    def on_data_table_row_selected(self, event: DiffTable.RowSelected) -> None:
        if event.data_table.id == "instance-table" and event.row_key.value:
            self.app.show_instance(event.row_key.value)  # type: ignore[attr-defined]

    def action_focus_next_table(self) -> None:
        gpu = self.query_one("#gpu-table", DiffTable)
        inst = self.query_one("#instance-table", DiffTable)
        (inst if gpu.has_focus else gpu).focus()
