"""A DataTable that is given whole rows and repaints only the rows that changed.

`DataTable.update_cell` repaints the *whole* table (and, with `update_width=True`,
re-measures the column on the next idle) for every cell it is given: at 1 Hz with two
live tables that was most of the dashboard's idle CPU. Here, per refresh:

- an unchanged cell is not written at all, an unchanged row is not repainted;
- a changed row is written in place and only its own lines are repainted, and only the
  render caches of its changed cells and of its lines are dropped: bumping DataTable's
  `_update_count` (what `update_cell` does) throws away every cell of every row, so an idle
  GPU blipping 0 -> 1 % re-rendered all eight cells of its row (the sparklines too);
- only a cell wider than its column goes through `update_cell(update_width=True)`
  (the column must grow, so the table must lay out again);
- a new set of row keys (an instance added or removed) rebuilds the table once.

The in-place write uses DataTable internals (`_data`, the cell store; its render caches
`_cell_render_cache`, `_row_render_cache`, `_row_renderable_cache`, `_line_cache` and the
keys they are stored under); tests/ui/test_diff_table.py reads painted rows back, so it
fails loudly if a Textual release changes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


def cell_width(value: object) -> int:
    """Cells as DataTable shows them: a str is console markup, a Text is itself. A str
    without "[" has no markup: measured as it is (the columns are measured each second)."""
    if isinstance(value, Text):
        return value.cell_len
    text = str(value)
    if "[" not in text:
        return cell_len(text)
    return Text.from_markup(text).cell_len


def same_cell(old: object, new: object) -> bool:
    """Shows the same: rich's Text compares its text and spans but not its own style, so a
    figure that keeps its digits but changes colour (a load threshold crossed) is a change."""
    if old is new:
        return True
    if isinstance(old, Text) and isinstance(new, Text):
        return old == new and old.style == new.style
    return old == new


def same_cells(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    return len(old) == len(new) and all(same_cell(a, b) for a, b in zip(old, new))


class DiffTable(DataTable):
    DEFAULT_CSS = """
    DiffTable { height: auto; max-height: 100%; }
    """

    async def _on_idle(self, event: events.Idle) -> None:
        # DataTable measures its columns again here (new rows, wider cells) but keeps the
        # lines it rendered with the old widths: the header kept them until the next change
        # (seen on a loaded machine as a header out of line with its rows). Only when a
        # width really changed are those lines dropped, so the 1 Hz updates cost no more.
        before = [column.get_render_width(self) for column in self.columns.values()]
        await super()._on_idle(event)
        if [column.get_render_width(self) for column in self.columns.values()] != before:
            self._update_count += 1
            self.refresh()

    def __init__(self, columns: Sequence[str], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._column_names = tuple(columns)
        # Columns are added before the first mount so the first layout is the final one.
        self._column_keys = [self.add_column(name, key=name) for name in self._column_names]
        self._cells: dict[str, tuple[object, ...]] = {}

    def set_rows(self, rows: Sequence[tuple[str, tuple[object, ...]]]) -> bool:
        """Show these rows; whether the table was rebuilt (the set of row keys changed)."""
        keys = [key for key, _ in rows]
        if keys != list(self._cells):
            self._rebuild(rows, keys)
            return True
        changed: set[int] = set()  # the positions of the columns written
        for index, (key, cells) in enumerate(rows):
            cells = tuple(cells)
            before = self._cells[key]
            if same_cells(before, cells):
                continue
            self._cells[key] = cells
            self._write_row(index, key, before, cells)
            changed.update(position for position, (old, new) in enumerate(zip(before, cells)) if not same_cell(old, new))
        if changed:
            self._shrink_columns(changed)
        return False

    def _shrink_columns(self, positions: set[int]) -> None:
        """A column narrows again when its widest cell went (`starting: LMCache init` ->
        `ready`): DataTable itself only ever widens a column. Only a written column can
        have lost its widest cell, so only those are measured again."""
        shrunk = False
        for position in sorted(positions):
            column_key = self._column_keys[position]
            column = self.columns[column_key]
            needed = max([cell_width(column.label)] + [cell_width(cells[position]) for cells in self._cells.values()])
            if column.auto_width and column.content_width > needed:
                column.content_width = needed
                shrunk = True
        if shrunk:
            self._require_update_dimensions = True
            self._update_count += 1
            self.refresh()

    def _rebuild(self, rows: Sequence[tuple[str, tuple[object, ...]]], keys: list[str]) -> None:
        selected = self.selected_key()
        self.clear()
        self._cells = {}
        for key, cells in rows:
            self.add_row(*cells, key=key)
            self._cells[key] = tuple(cells)
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

    def _write_row(self, index: int, key: str, before: tuple[object, ...], cells: tuple[object, ...]) -> None:
        row_key = RowKey(key)
        stored = self._data[row_key]  # row key -> {column key -> value}
        written: set[object] = set()
        for column, (old, new) in enumerate(zip(before, cells)):
            if same_cell(old, new):
                continue
            column_key = self._column_keys[column]
            if cell_width(new) > self.columns[column_key].content_width:
                self.update_cell(key, column_key, new, update_width=True)  # the column grows
            else:
                stored[column_key] = new
                written.add(column_key)
        if written:
            self._forget_rendered(key, index, written)
            self.refresh_row(index)

    def _forget_rendered(self, key: str, index: int, columns: set[object]) -> None:
        """Drop what DataTable rendered from the written cells and the row's lines; every
        other cell stays cached. (Cache keys: cell (row, column, ...), row line (row, ...),
        row renderables (update count, row index), screen line (y, ...).) Row keys are
        told apart by their `.value`: RowKey's own `==` is a Python call, and these scans
        meet every cached entry of the table each time a row changes."""
        cells = self._cell_render_cache
        for cell_key in [k for k in cells.keys() if k[0].value == key and k[1] in columns]:
            cells.discard(cell_key)
        rows = self._row_render_cache
        for row_cache_key in [k for k in rows.keys() if k[0].value == key]:
            rows.discard(row_cache_key)
        self._row_renderable_cache.discard((self._update_count, index))
        lines = self._line_cache
        header = self.header_height if self.show_header else 0
        offsets = self._y_offsets
        for line_key in list(lines.keys()):
            y = line_key[0] - header
            if 0 <= y < len(offsets) and offsets[y][0].value == key:
                lines.discard(line_key)

    def selected_key(self) -> str | None:
        if not self._cells or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except Exception:
            return None
