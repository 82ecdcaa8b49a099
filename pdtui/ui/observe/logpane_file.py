"""The log pane's reading back from the file: search and its matches, jumps (last error,
older/newer windows, top), save and copy. A mixin of `LogPane` (pdtui.ui.observe.logpane),
which owns the widgets, the follow state and the key bindings; everything here runs the
file work on a thread worker and comes back through `_show`/`_goto`/`_update_status`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pdtui.telemetry.logtail import ViewFilter

if TYPE_CHECKING:
    from collections import deque

    from textual.widgets import Log

    from textual.widget import Widget

    from pdtui.telemetry.logtail import LogFollower, LogView
    from pdtui.ui.observe.logstyle import LogHighlighter

    _Pane = Widget
else:
    _Pane = object

__all__ = ["LogPaneFileActions"]


class LogPaneFileActions(_Pane):
    if TYPE_CHECKING:  # provided by LogPane
        follower: LogFollower | LogView
        view: ViewFilter
        path: Path
        save_dir: Path
        window: int
        following: bool
        search_text: str
        matches: list[int]
        current_match: int | None
        last_saved: Path | None
        _message: str
        _highlighter: LogHighlighter
        _window: deque[tuple[int, str]]

        @property
        def log_view(self) -> Log: ...
        def _update_status(self) -> None: ...
        def _goto(self, line_no: int) -> None: ...
        def _load(self, compute, focus_line: int | None, follow: bool) -> None: ...
        def _set_view(self, view: ViewFilter) -> None: ...
        def shown_lines(self) -> list[str]: ...

    def start_search(self, text: str) -> None:
        self.search_text = text
        self._highlighter.search = text
        self.log_view.notify_style_update()
        self.log_view.refresh()
        self.matches, self.current_match = [], None

        def job() -> None:
            found = self.follower.search(text)
            self.app.call_from_thread(self._search_done, text, found)

        self.run_worker(job, thread=True, exclusive=True, group="log-search", exit_on_error=False)
        if self.view.only_matching:
            self._set_view(ViewFilter(text, True, self.view.min_level, self.view.hide_polling))

    def _search_done(self, text: str, found: list[int]) -> None:
        if text != self.search_text:
            return
        self.matches = found
        if not text:
            self._message = ""
        elif not found:
            self._message = f"'{text}' not found"
        else:
            self._message = ""
            self.current_match = len(found) - 1  # the newest first, as a tail reader expects
            self._goto(found[-1])
        self._update_status()

    def _refresh_matches(self) -> None:
        self.matches = self.follower.matches() if self.search_text else []

    def action_next_match(self) -> None:
        self._step_match(+1)

    def action_previous_match(self) -> None:
        self._step_match(-1)

    def _step_match(self, step: int) -> None:
        self._refresh_matches()
        if not self.matches:
            self._message = "no search (/)" if not self.search_text else f"'{self.search_text}' not found"
            self._update_status()
            return
        if self.current_match is None:
            index = len(self.matches) - 1 if step < 0 else 0
        else:
            index = max(0, min(len(self.matches) - 1, self.current_match + step))
        self.current_match = index
        self._message = ""
        self._goto(self.matches[index])

    def action_last_error(self) -> None:
        line = self.follower.last_error_line
        if line is None:
            self._message = "no error in this log"
            self._update_status()
            return
        self._message = f"last error: line {line + 1}"
        self._goto(line)

    def action_older(self) -> None:
        if self._window:
            self._goto_window(self._window[0][0] - 1)

    def action_newer(self) -> None:
        if self._window:
            self._goto_window(self._window[-1][0] + 1)

    def _goto_window(self, line_no: int) -> None:
        if line_no < 0 or line_no >= self.follower.total_lines:
            return
        self.following = False
        view = self.view
        self._load(lambda: self.follower.around(line_no, self.window, view), line_no, False)

    def action_top(self) -> None:
        self.following = False
        view = self.view
        self._load(lambda: self.follower.around(0, self.window, view), None, False)

    def action_save(self) -> None:
        view = self.view
        window = self.shown_lines()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.save_dir / f"{self.path.stem}-saved-{stamp}.log"
        k = 1
        while dest.exists():
            k += 1
            dest = self.save_dir / f"{self.path.stem}-saved-{stamp}-{k}.log"

        def job() -> None:
            if view.active:
                lines = [line for _, line in self.follower.iter_lines() if view.accepts(line)]
            else:
                lines = window
            try:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                self.follower.save(dest, lines)
                message, path = f"saved {len(lines)} lines to {dest}", dest
            except OSError as exc:
                message, path = f"cannot save to {dest}: {exc.strerror or exc}", None
            self.app.call_from_thread(self._saved, message, path)

        self.run_worker(job, thread=True, group="log-save", exit_on_error=False)

    def _saved(self, message: str, path: Path | None) -> None:
        self.last_saved = path
        self._message = message
        self.notify(message, severity="information" if path else "error")
        self._update_status()

    def action_copy(self) -> None:
        log = self.log_view
        top = int(log.scroll_y)
        lines = list(log.lines[top: top + log.size.height])
        self.app.copy_to_clipboard("\n".join(lines))
        self._message = f"copied {len(lines)} lines"
        self._update_status()
