"""Drill-down on one instance: its state, why it failed, how it was started, its log.

The log here is a plain bounded `Log` fed by the supervisor's LogLines events; `l`
opens the observe screens (searchable log panes of every instance and the proxy, the
KV-transfer and latency views, the request playground).
"""

from __future__ import annotations

import shlex

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from pdtui.ui import format as fmt
from pdtui.ui.bindings import bindings_for

LOG_LINES_KEPT = 2000


class InstanceScreen(Screen):
    BINDINGS = bindings_for("instance")
    DEFAULT_CSS = """
    InstanceScreen #instance-details { height: auto; max-height: 50%; border: round $primary; padding: 0 1; }
    InstanceScreen #instance-logs { height: 1fr; border: round $primary 60%; }
    InstanceScreen #instance-metrics { height: auto; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.instance_name = name

    def compose(self) -> ComposeResult:
        details = Static("", id="instance-details", markup=False)
        details.border_title = self.instance_name
        yield details
        yield Vertical(id="instance-metrics")
        logs = Log(max_lines=LOG_LINES_KEPT, id="instance-logs", auto_scroll=True)
        logs.border_title = "log"
        yield logs
        yield Footer()

    def on_mount(self) -> None:
        self.on_status(self.app.control.status())  # type: ignore[attr-defined]
        self._load_log_tail()

    def _load_log_tail(self) -> None:
        status = self.app.control.status()  # type: ignore[attr-defined]
        if status is None:
            return
        try:
            path = status.instance(self.instance_name).log_path
        except KeyError:
            return
        if path:
            self._read_tail(path)

    def _read_tail(self, path: str) -> None:
        def read() -> list[str]:
            try:
                with open(path, "rb") as handle:
                    handle.seek(0, 2)
                    size = handle.tell()
                    handle.seek(max(0, size - 64 * 1024))
                    return handle.read().decode("utf-8", "replace").splitlines()[-200:]
            except OSError:
                return []

        async def load() -> None:
            import asyncio

            lines = await asyncio.to_thread(read)
            self.query_one("#instance-logs", Log).write_lines(lines)

        self.run_worker(load(), group="log-tail", exclusive=True)

    def on_status(self, status) -> None:
        details = self.query_one("#instance-details", Static)
        if status is None:
            details.update(self._planned_text())
            return
        try:
            inst = status.instance(self.instance_name)
        except KeyError:
            details.update(f"{self.instance_name} is not part of run {status.run_name}")
            return
        lines = [
            f"state     {inst.state}" + (f" ({inst.milestone}: {inst.milestone_detail})" if inst.milestone and str(inst.state) == "starting" else ""),
            f"role      {inst.kind}    GPUs {fmt.gpu_list(inst.gpus)}    port {inst.port or '-'}",
            f"pid       {inst.pid or '-'}    uptime {fmt.duration(inst.uptime_s)}    restarts {inst.restarts}",
        ]
        if inst.reason:
            lines.append(f"reason    {inst.reason}")
        if inst.exit_code is not None:
            lines.append(f"exit code {inst.exit_code}")
        lines.append(f"health    {inst.health_url or '-'}")
        lines.append(f"log       {inst.log_path or '-'}")
        if inst.argv:
            lines.append("argv      " + shlex.join(inst.argv))
        details.update("\n".join(lines))

    def _planned_text(self) -> str:
        return f"{self.instance_name}: not running. Launch with u on the dashboard."

    def on_log_lines(self, event) -> None:
        if event.name == self.instance_name:
            self.query_one("#instance-logs", Log).write_lines(list(event.lines))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_observe(self) -> None:
        """Every instance's log pane, the KV-transfer and latency views and the playground."""
        status = self.app.control.status()  # type: ignore[attr-defined]
        if status is None:
            self.notify("Nothing is running: launch the deployment first (u on the dashboard).", severity="warning")
            return
        from pdtui.ui.observe import ObserveScreen

        self.app.push_screen(ObserveScreen.from_status(status, initial=self.instance_name))
