"""Drill-down on one instance: its state, why it failed, how it was started, its log.

The log here is a plain bounded `Log` fed by a view of the deployment monitor's tail of
the instance's log (pdtui's own polling lines hidden). It drains on the view's doorbell
(`LogView.on_new`, rung by the monitor's inotify-woken tail), at most every DRAIN_S, like
the cockpit's log pane: no timer runs while the log is quiet. `l` opens the observe screens (searchable log panes of every instance and the proxy, the
KV-transfer and latency views, the request playground).
"""

from __future__ import annotations

import shlex
import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Log, Static

from pdtui.telemetry.logtail import LogView
from pdtui.ui import format as fmt
from pdtui.ui.bindings import bindings_for
from pdtui.ui.messages import DeploymentChanged, ShowObserve
from pdtui.ui.session import Session

LOG_LINES_KEPT = 2000
DRAIN_S = 0.25  # at most this often: a burst of lines is one write


class InstanceScreen(Screen):
    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = bindings_for("instance")

    def __init__(self, name: str, session: Session) -> None:
        super().__init__()
        self.instance_name = name
        self.session = session
        self._view: LogView | None = None
        self._drain_timer: Timer | None = None
        self._last_drain = 0.0
        self.drains = 0  # times the view was drained (tests: none while the log is quiet)

    class LinesArrived(Message):
        """New lines wait in the log's view (posted from the monitor's tailing thread)."""

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
        self.on_status(self.session.status())
        self._load_log_tail()
        monitor = self.session.monitor
        if monitor is not None and self.instance_name in monitor.followers():
            self._view = monitor.follower(self.instance_name).view(window=LOG_LINES_KEPT)
            self._view.on_new = self._ring
            self._new_lines()  # lines that came before the doorbell was connected

    def on_unmount(self) -> None:
        if self._view is not None:
            self._view.on_new = None
            self._view.stop()

    def _ring(self) -> None:
        self.post_message(self.LinesArrived())  # thread-safe

    def on_instance_screen_lines_arrived(self, message: LinesArrived) -> None:
        message.stop()
        if self._drain_timer is not None:
            return  # a drain is due already
        wait = self._last_drain + DRAIN_S - time.monotonic()
        if wait <= 0:
            self._new_lines()
        else:
            self._drain_timer = self.set_timer(wait, self._new_lines)

    def on_deployment_changed(self, _message: DeploymentChanged) -> None:
        self.on_status(self.session.status())

    def _new_lines(self) -> None:
        self._drain_timer = None
        self._last_drain = time.monotonic()
        self.drains += 1
        if self._view is not None:
            items, _ = self._view.take_pending()
            if items:
                self.query_one("#instance-logs", Log).write_lines([line for _, line in items])

    def _load_log_tail(self) -> None:
        status = self.session.status()
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

        self.run_worker(load(), group="log-tail", exclusive=True, exit_on_error=False)

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
        if inst.where:
            lines.append(f"runs      {inst.where}")
        lines.append(f"health    {inst.health_url or '-'}")
        lines.append(f"log       {inst.log_path or '-'}")
        if inst.argv:
            lines.append("argv      " + shlex.join(inst.argv))
        details.update("\n".join(lines))

    def _planned_text(self) -> str:
        return f"{self.instance_name}: not running. Launch with u on the dashboard."

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_observe(self) -> None:
        """Every instance's log pane, the KV-transfer and latency views and the playground."""
        self.post_message(ShowObserve(self.instance_name))
