"""A one-line Static that repaints only when its text changes.

`Static.update` lays the whole screen out again by default (the new text might need
another size); these lines have a fixed height of 1 and the width of their container,
so a new text needs a repaint of the line only — and an unchanged one, nothing.
"""

from __future__ import annotations

from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; }
    """

    _shown: object = None

    def show(self, content: str) -> None:
        if content == self._shown:
            return
        self._shown = content
        self.update(content, layout=False)
