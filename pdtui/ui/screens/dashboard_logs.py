"""The cockpit's log box: every instance interleaved with a colour per instance (the
default: the whole deployment at a glance), or the selected instance's `LogPane` (the
full log screen's pane, same keys; `a` switches, then the selection moves it).

Both read the deployment monitor's one tail of each file through their own views; the
box never opens a file for new lines. Pdtui's own /health and /metrics polling is hidden
by default in both (`P` shows it).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a deployment is attached, not before the first paint
    from pdtui.telemetry.logtail import LogView, ViewFilter
    from pdtui.telemetry.monitor import DeploymentMonitor
    from pdtui.ui.observe.logpane import LogPane

__all__ = ["CockpitLogs", "MergedLog"]

PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
TICK_S = 0.25  # at most four writes a second: a merged view is for watching, not for reading back


def _display_line(line: str, timestamps: bool) -> str:
    from pdtui.ui.observe.logstyle import display_line

    return display_line(line, timestamps)


class MergedLog(Vertical):
    """All instances' new lines as they come, `name │ line`, coloured per instance.

    No timer runs while the logs are quiet: each view rings (`LogView.on_new`, on the
    monitor's thread) when lines arrive, and the box drains every view at most every
    TICK_S, so a burst of lines is one write."""

    class LinesArrived(Message):
        """New lines wait in a view (posted from the monitor's thread)."""

    BINDINGS = [
        Binding("l", "cycle_level", "Level"),
        Binding("P", "toggle_polling", "Polling lines"),
        Binding("t", "toggle_timestamps", "Time"),
    ]

    def __init__(self, monitor: DeploymentMonitor, max_lines: int = 2000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.monitor = monitor
        self.max_lines = max_lines
        from pdtui.telemetry.logtail import ViewFilter

        self.view = ViewFilter()
        self.timestamps = True
        self.lines_shown = 0
        self._views: dict[str, LogView] = {}
        self._colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(monitor.followers())}
        self.drains = 0  # times the views were drained (tests: no drain without lines)
        self._drain_timer: Timer | None = None
        self._last_drain = 0.0

    def compose(self) -> ComposeResult:
        from textual.widgets import RichLog  # with rich.pretty and attrs (~10 ms): not before the first paint

        yield Static("", id="log-status", markup=False)
        yield RichLog(max_lines=self.max_lines, wrap=False, auto_scroll=True, id="merged-log")

    def on_mount(self) -> None:
        self._open_views()
        self._tick()  # lines that came before the doorbells were connected

    def _open_views(self) -> None:
        for name, follower in self.monitor.followers().items():
            view = follower.view(window=self.max_lines, view=self.view)
            view.on_new = self._ring
            self._views[name] = view
        self._status()

    def _ring(self) -> None:
        self.post_message(self.LinesArrived())  # thread-safe

    def on_merged_log_lines_arrived(self, message: LinesArrived) -> None:
        message.stop()
        if self._drain_timer is not None:
            return  # a drain is due already
        wait = self._last_drain + TICK_S - time.monotonic()
        if wait <= 0:
            self._tick()
        else:
            self._drain_timer = self.set_timer(wait, self._tick)

    def on_unmount(self) -> None:
        for view in self._views.values():
            view.stop()
        self._views.clear()

    def _tick(self) -> None:
        self._drain_timer = None
        self._last_drain = time.monotonic()
        self.drains += 1
        batch: list[tuple[str, str]] = []
        for name, view in self._views.items():
            items, _skipped = view.take_pending()
            batch.extend((name, line) for _, line in items)
        if not batch:
            return
        from textual.widgets import RichLog

        log = self.query_one("#merged-log", RichLog)
        width = max(len(n) for n in self._views)
        for name, line in batch:
            text = Text(f"{name:<{width}} │ ", style=self._colours.get(name, ""))
            text.append(_display_line(line, self.timestamps))
            log.write(text)
        self.lines_shown += len(batch)

    def _status(self) -> None:
        from pdtui.ui.observe.logpane import LEVEL_NAMES

        parts = ["ALL INSTANCES (a: selected only)", f"level {LEVEL_NAMES[self.view.min_level]}"]
        parts.append("polling hidden (P shows)" if self.view.hide_polling else "polling shown")
        self.query_one("#log-status", Static).update(" | ".join(parts))

    def _set_view(self, view: ViewFilter) -> None:
        self.view = view
        for v in self._views.values():
            v.set_filter(view)
        self._status()

    def action_cycle_level(self) -> None:
        level = {1: 2, 2: 3, 3: 1}[self.view.min_level]
        self._set_view(type(self.view)(self.view.text, self.view.only_matching, level, self.view.hide_polling))

    def action_toggle_polling(self) -> None:
        self._set_view(type(self.view)(self.view.text, self.view.only_matching, self.view.min_level, not self.view.hide_polling))

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps


class CockpitLogs(Vertical):
    """Follows one instance (`follow(name)`) or all of them (`show_all()`)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.monitor: DeploymentMonitor | None = None
        self.following: str | None = None  # instance name; None with "all"
        self.all = True

    def compose(self) -> ComposeResult:
        yield Static("logs: launch the deployment (u) to follow its instances here", id="log-placeholder")

    def attach(self, monitor: DeploymentMonitor | None, name: str | None) -> None:
        """A new deployment's monitor (or none): start over with its logs."""
        if monitor is self.monitor:
            if name and not self.all and name != self.following:
                self.follow(name)
            return
        self.monitor = monitor
        self.following = None
        if monitor is None:
            self._replace(Static("logs: launch the deployment (u) to follow its instances here", id="log-placeholder"))
            return
        if self.all:
            self.show_all()
        else:
            self.follow(name or next(iter(monitor.followers()), ""))

    def follow(self, name: str) -> None:
        monitor = self.monitor
        if monitor is None or name not in monitor.followers() or (name == self.following and not self.all):
            return
        self.all = False
        self.following = name
        follower = monitor.follower(name)
        from pdtui.ui.observe.logpane import LogPane

        pane = LogPane(follower.path, title=name, follower=follower.view(), save_dir=monitor.run_dir,
                       window=2000)
        self._replace(pane)

    def show_all(self) -> None:
        if self.monitor is None:
            return
        self.all = True
        self.following = None
        self._replace(MergedLog(self.monitor))

    def toggle_all(self, selected: str | None) -> None:
        if self.all:
            self.all = False
            if selected:
                self.follow(selected)
        else:
            self.show_all()

    def _replace(self, widget) -> None:
        if not self.is_attached:
            return  # the app is closing (quit -> detach): nothing to show any more
        had_focus = any(child.has_focus_within for child in self.children)
        self.remove_children()
        self.mount(widget)
        if had_focus:
            self.call_after_refresh(widget.focus)

    @property
    def pane(self) -> LogPane | MergedLog | None:
        from pdtui.ui.observe.logpane import LogPane  # imported by then: a pane exists only once attached

        for child in self.children:
            if isinstance(child, (LogPane, MergedLog)):
                return child
        return None
