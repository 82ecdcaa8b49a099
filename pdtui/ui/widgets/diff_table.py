"""A DataTable that is given whole rows and touches only the cells that changed.

Clearing and refilling a table every refresh repaints all of it; at 1 Hz with 8 GPUs
and 5 instances that alone costs a few percent of a core. Here an unchanged cell is
not written at all, and a new row set (an instance added) rebuilds the table once.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable


class DiffTable(DataTable):
    DEFAULT_CSS = """
    DiffTable { height: auto; max-height: 100%; }
    """

    def __init__(self, columns: Sequence[str], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_names = tuple(columns)
        self._column_keys: list = []
        self._cells: dict[str, tuple[object, ...]] = {}

    def on_mount(self) -> None:
        self._column_keys = [self.add_column(name, key=name) for name in self._column_names]

    def set_rows(self, rows: Sequence[tuple[str, tuple[object, ...]]]) -> None:
        keys = [key for key, _ in rows]
        if keys != list(self._cells):
            selected = self.selected_key()
            self.clear()
            self._cells = {}
            for key, cells in rows:
                self.add_row(*cells, key=key)
                self._cells[key] = tuple(cells)
            if selected in keys:
                self.move_cursor(row=keys.index(selected), animate=False)
            return
        for key, cells in rows:
            before = self._cells[key]
            if before == tuple(cells):
                continue
            for column, (old, new) in enumerate(zip(before, cells)):
                if old != new:
                    self.update_cell(key, self._column_keys[column], new, update_width=True)
            self._cells[key] = tuple(cells)

    def selected_key(self) -> str | None:
        if not self._cells or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        except Exception:
            return None
