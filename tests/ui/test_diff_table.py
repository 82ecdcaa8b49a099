"""DiffTable writes changed cells in place and repaints only their rows.

The in-place write relies on two DataTable internals; these tests read the table back
the way the screen shows it, so a Textual release that changes them fails here.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from pdtui.ui.widgets.diff_table import DiffTable, cell_width

COLUMNS = ("Name", "Value")


class OneTable(App):
    def compose(self) -> ComposeResult:
        yield DiffTable(COLUMNS, id="t")


def shown(table: DiffTable, row: int) -> str:
    """The text of a row as painted (line 0 is the header)."""
    return "".join(segment.text for segment in table.render_line(row + 1)).strip()


def test_cell_width_reads_markup_and_text():
    assert cell_width("[b]abc[/b]") == 3
    assert cell_width(Text("abcd")) == 4
    assert cell_width(42) == 2


async def test_changed_cells_show_and_unchanged_rows_stay_cached():
    app = OneTable()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(DiffTable)
        table.set_rows([("a", ("alpha", "1000")), ("b", ("beta", "2"))])
        await pilot.pause()
        assert [shown(table, r).split() for r in range(2)] == [["alpha", "1000"], ["beta", "2"]]

        count = table._update_count
        table.set_rows([("a", ("alpha", "1000")), ("b", ("beta", "2"))])
        assert table._update_count == count, "unchanged rows must not invalidate the render caches"

        # Narrower than the column: written in place.
        table.set_rows([("a", ("alpha", "7")), ("b", ("beta", "2"))])
        await pilot.pause()
        assert shown(table, 0).split() == ["alpha", "7"]
        assert table.get_row_at(0) == ["alpha", "7"]

        # Wider than the column: the column grows.
        table.set_rows([("a", ("alpha", "123456789")), ("b", ("beta", "2"))])
        await pilot.pause()
        assert shown(table, 0).split() == ["alpha", "123456789"]
        assert table.columns[table._column_keys[1]].content_width >= 9

        # Another set of keys rebuilds the table and keeps the selected row.
        table.move_cursor(row=1)
        table.set_rows([("c", ("gamma", "3")), ("b", ("beta", "2"))])
        await pilot.pause()
        assert table.row_count == 2 and shown(table, 0).split() == ["gamma", "3"]
        assert table.selected_key() == "b"
