"""A log pane that follows a file: follow/pause with "+N new lines", search, filters, save.

The file is tailed by a `LogFollower` (its own thread, or the deployment monitor's one
tail); when new lines reach the pane's view it rings (`on_new`, from that thread) and the
pane moves them into a `Log` with one `write_lines` call, at most every TICK_S; no timer
runs while the file is quiet. Scrolling (up: pause; back to the end: follow) is handled
as it happens. The pane shows a window of at most `window`
lines; older lines are read back from the file on demand (`[`, `g`, a search hit).

Keys (while the log has focus): `/` search, `n`/`N` next/previous match, `f` show only
matching lines, `l` level filter (all / warnings+errors / errors), `w` wrap, `t`
timestamps, `P` show/hide pdtui's own /health and /metrics polling lines (hidden by
default; the file keeps them), `e` jump to the last error, `[`/`]` older/newer lines from the file, `g` top
of the file, `end`/`G` follow again, `s` save the lines shown (a filter saves every
matching line of the file) and `c` copy the visible lines to the clipboard.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import deque
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Log, Static

from pdtui.telemetry.logtail import LogFollower, LogView, ViewFilter
from pdtui.ui.observe.logpane_file import LogPaneFileActions
from pdtui.ui.observe.logstyle import LogHighlighter, display_line, wrap_line

__all__ = ["LEVEL_NAMES", "LogPane"]

LEVEL_NAMES = {1: "all", 2: "warn+err", 3: "errors"}
TICK_S = 0.1


class PaneLog(Log):
    """The Log inside a LogPane: End means "follow the file", not "end of this window"."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        pane = self.parent
        if isinstance(pane, LogPane) and round(old_value) != round(new_value):
            pane.schedule_tick()  # the operator scrolled: pause, or follow again at the end

    def action_scroll_end(self) -> None:
        pane = self.parent
        if isinstance(pane, LogPane):
            pane.action_follow()
        else:
            super().action_scroll_end()


class LogPane(LogPaneFileActions, Vertical):
    class LinesArrived(Message):
        """New lines wait in the pane's view (posted from the tailing thread)."""

    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane > #log-status { height: 1; background: $boost; color: $text-muted; }
    LogPane > PaneLog { height: 1fr; }
    LogPane > #log-search { dock: bottom; display: none; }
    LogPane > #log-search.shown { display: block; }
    """
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next"),
        Binding("N", "previous_match", "Prev"),
        Binding("f", "toggle_filter", "Filter"),
        Binding("l", "cycle_level", "Level"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("t", "toggle_timestamps", "Time"),
        Binding("P", "toggle_polling", "Polling lines", show=False),
        Binding("e", "last_error", "Last error"),
        Binding("left_square_bracket", "older", "Older", show=False),
        Binding("right_square_bracket", "newer", "Newer", show=False),
        Binding("g", "top", "Top", show=False),
        Binding("end,G", "follow", "Follow"),
        Binding("s", "save", "Save"),
        Binding("c", "copy", "Copy", show=False),
        Binding("escape", "cancel_search", "Cancel search", show=False),
    ]

    def __init__(self, path: str | os.PathLike[str], *, title: str | None = None, window: int = 5000,
                 save_dir: str | os.PathLike[str] | None = None, follower: LogFollower | LogView | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.path = Path(path)
        self.title = title or self.path.stem
        self.window = window
        self.save_dir = Path(save_dir) if save_dir is not None else self.path.parent
        # A view of a follower someone else polls (the deployment monitor), or a follower
        # of its own (a standalone pane, tests).
        self.follower: LogFollower | LogView = follower or LogFollower(self.path, window=window)
        self.following = True
        self.new_lines = 0  # arrived while paused
        self.view = ViewFilter()
        self.wrap = False
        self.timestamps = True
        self.search_text = ""
        self.matches: list[int] = []
        self.current_match: int | None = None  # index into matches
        self.last_saved: Path | None = None
        self.lines_shown = 0  # lines written to the Log since mount (benchmark figure)
        self._window: deque[tuple[int, str]] = deque(maxlen=window)  # raw lines shown
        self._display_nos: deque[int] = deque(maxlen=window)  # file line number per Log line
        self._last_no = -1
        self._window_is_tail = False
        self._loading = False
        self._highlighter = LogHighlighter()
        self._status_text = ""
        self._message = ""
        self._tick_due = False
        self._last_tick = 0.0
        self.ticks = 0  # drains (tests: none while the file is quiet)

    def compose(self) -> ComposeResult:
        yield Static("", id="log-status", markup=False)
        log = PaneLog(max_lines=self.window, highlight=True, auto_scroll=True)
        log.highlighter = self._highlighter
        yield log
        yield Input(placeholder="search (enter: find, esc: cancel)", id="log-search")

    @property
    def log_view(self) -> PaneLog:
        return self.query_one(PaneLog)

    def on_mount(self) -> None:
        self.border_title = self.title
        self.follower.on_new = self._ring
        self.run_worker(self._start_follower, thread=True, group="log-start", exit_on_error=False)

    def _start_follower(self) -> None:
        self.follower.start()
        items = self.follower.tail(self.window, self.view)
        self.follower.take_pending()
        self.app.call_from_thread(self._show, items, None, True)

    def on_unmount(self) -> None:
        self.follower.on_new = None
        self.follower.stop()

    # --- the tick: new lines and scrolling, at most every TICK_S -------------------------
    def _ring(self) -> None:
        self.post_message(self.LinesArrived())  # thread-safe

    def on_log_pane_lines_arrived(self, message: LinesArrived) -> None:
        message.stop()
        self.schedule_tick()

    def schedule_tick(self) -> None:
        if self._tick_due:
            return  # one is due already
        self._tick_due = True
        wait = self._last_tick + TICK_S - time.monotonic()
        if wait <= 0:
            self.call_later(self._tick)  # soon, but not inside a scroll watcher
        else:
            self.set_timer(wait, self._tick)

    def _tick(self) -> None:
        self._tick_due = False
        self._last_tick = time.monotonic()
        self.ticks += 1
        if not self.follower.started:
            return
        batch, skipped = self.follower.take_pending()
        batch = [item for item in batch if item[0] > self._last_no]
        log = self.log_view
        at_end = log.is_vertical_scroll_end
        if self.following and not at_end and not log.is_vertical_scrollbar_grabbed:
            self.following = False  # the user scrolled up: stop moving the text under them
        elif not self.following and at_end and self._window_is_tail and not self._loading:
            # Scrolled back down to the end of the tail window: follow again, with what came meanwhile.
            self.action_follow()
            return
        if batch or skipped:
            if self.following:
                self._append(batch)
            else:
                self.new_lines += len(batch) + skipped
                self._last_no = max(self._last_no, batch[-1][0]) if batch else self._last_no
        self._update_status()

    def _render_items(self, items: list[tuple[int, str]]) -> tuple[list[str], list[int]]:
        lines: list[str] = []
        nos: list[int] = []
        width = self.log_view.scrollable_content_region.width or 80
        for n, raw in items:
            text = display_line(raw, self.timestamps)
            pieces = wrap_line(text, width) if self.wrap else [text]
            lines.extend(pieces)
            nos.extend([n] * len(pieces))
        return lines, nos

    def _append(self, items: list[tuple[int, str]]) -> None:
        if not items:
            return
        lines, nos = self._render_items(items)
        self._window.extend(items)
        self._display_nos.extend(nos)
        self._last_no = items[-1][0]
        self.lines_shown += len(lines)
        self.log_view.write_lines(lines, scroll_end=self.following)

    def _show(self, items: list[tuple[int, str]], focus_line: int | None, follow: bool) -> None:
        """Replace the window with `items`; scroll to `focus_line` or follow the end."""
        self._loading = False
        self._window_is_tail = follow
        log = self.log_view
        log.clear()
        self._window.clear()
        self._display_nos.clear()
        self.following = follow
        if follow:
            self.new_lines = 0
        self._last_no = max(self._last_no, items[-1][0]) if items and follow else self._last_no
        if follow:
            self._append(items)
            log.scroll_end(animate=False, immediate=True)
        else:
            lines, nos = self._render_items(items)
            self._window.extend(items)
            self._display_nos.extend(nos)
            log.write_lines(lines, scroll_end=False)
            if focus_line is not None:
                self._scroll_to_line(focus_line)
        self._update_status()

    def _scroll_to_line(self, line_no: int) -> bool:
        nos = list(self._display_nos)
        y = bisect_left(nos, line_no)
        if y >= len(nos) or nos[y] != line_no:
            return False
        log = self.log_view
        log.scroll_to(y=max(0, y - log.size.height // 2), animate=False, immediate=True)
        return True

    # --- status line --------------------------------------------------------------------
    def _update_status(self) -> None:
        parts = ["FOLLOW" if self.following else f"PAUSED +{self.new_lines} new lines (End: follow)"]
        parts.append(f"{self.follower.total_lines} lines")
        if self.view.only_matching and self.view.text:
            parts.append(f"filter '{self.view.text}'")
        if self.view.min_level > 1:
            parts.append(f"level {LEVEL_NAMES[self.view.min_level]}")
        if self.search_text:
            where = "-" if self.current_match is None else str(self.current_match + 1)
            parts.append(f"/{self.search_text} {where}/{len(self.matches)}")
        if not self.view.hide_polling:
            parts.append("polling shown")
        if self.wrap:
            parts.append("wrap")
        if not self.timestamps:
            parts.append("no timestamps")
        if self.follower.problem:
            parts.append(self.follower.problem)
        if self._message:
            parts.append(self._message)
        text = " | ".join(parts)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#log-status", Static).update(text)

    @property
    def status_text(self) -> str:
        return self._status_text

    def shown_line_numbers(self) -> list[int]:
        return [n for n, _ in self._window]

    def shown_lines(self) -> list[str]:
        return [line for _, line in self._window]

    # --- loading from the file -----------------------------------------------------------
    def _load(self, compute, focus_line: int | None, follow: bool) -> None:
        self._loading = True
        if not follow:
            self._window_is_tail = False

        def job() -> None:
            items = compute()
            self.app.call_from_thread(self._show, items, focus_line, follow)

        self.run_worker(job, thread=True, exclusive=True, group="log-load", exit_on_error=False)

    def _goto(self, line_no: int) -> None:
        self.following = False
        self._window_is_tail = False  # a jump is explicit: End (not scrolling down) follows again
        if self._scroll_to_line(line_no):
            self._update_status()
            return
        view = self.view
        self._load(lambda: self.follower.around(line_no, self.window, view), line_no, False)

    def action_follow(self) -> None:
        view = self.view

        def compute():
            self.follower.take_pending()
            return self.follower.tail(self.window, view)

        self.new_lines = 0
        self._load(compute, None, True)

    def _set_view(self, view: ViewFilter) -> None:
        self.view = view
        self.follower.set_filter(view)
        self._last_no = -1
        self.action_follow()

    # --- actions ------------------------------------------------------------------------
    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = self.search_text
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close_search()
        self.start_search(event.value.strip())

    def check_action(self, action: str, parameters) -> bool | None:
        # Escape closes the search box; otherwise it goes on to the screen (back).
        if action == "cancel_search":
            return self.query_one("#log-search", Input).has_class("shown")
        return True

    def action_cancel_search(self) -> None:
        self._close_search()

    def _close_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.remove_class("shown")
        self.log_view.focus()

    def action_toggle_filter(self) -> None:
        if not self.search_text and not self.view.only_matching:
            self._message = "search first (/), then f shows only the matching lines"
            self._update_status()
            return
        self._message = ""
        self._set_view(ViewFilter(self.search_text, not self.view.only_matching, self.view.min_level, self.view.hide_polling))

    def action_cycle_level(self) -> None:
        level = {1: 2, 2: 3, 3: 1}[self.view.min_level]
        self._set_view(ViewFilter(self.view.text, self.view.only_matching, level, self.view.hide_polling))

    def action_toggle_polling(self) -> None:
        view = self.view
        self._set_view(ViewFilter(view.text, view.only_matching, view.min_level, not view.hide_polling))

    def _rerender(self) -> None:
        items = list(self._window)
        top = self._display_nos[int(self.log_view.scroll_y)] if self._display_nos and not self.following else None
        self._show(items, top, self.following)

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap
        self._rerender()

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._rerender()
