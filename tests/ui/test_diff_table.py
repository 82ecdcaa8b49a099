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


class CountingTable(DiffTable):
    """Counts the refreshes the table asks for (a repaint of any region of it)."""

    refreshes = 0  # a class default: DataTable refreshes during its own __init__

    def refresh(self, *regions, **kwargs):
        self.refreshes += 1
        return super().refresh(*regions, **kwargs)


class CountingApp(App):
    def compose(self) -> ComposeResult:
        yield CountingTable(("GPU", "Util", "Util 5m", "Power"), id="t")


GPU_ROWS = [(f"gpu-{i}", (f"{i} H200", "  0%", Text("  ▁▁▁▁", style="green"), "130W")) for i in range(8)]


async def test_same_values_cause_no_refresh_and_a_changed_value_repaints_its_row_only():
    app = CountingApp()
    async with app.run_test(size=(80, 14)) as pilot:
        table = app.query_one(CountingTable)
        table.set_rows(GPU_ROWS)
        await pilot.pause()
        painted = [shown(table, r) for r in range(8)]

        # An idle GPU read again: the same figures, an equal (not identical) sparkline.
        before = table.refreshes
        for _ in range(5):
            table.set_rows([(key, (cells[0], cells[1], Text(cells[2].plain, style="green"), cells[3])) for key, cells in GPU_ROWS])
        await pilot.pause()
        assert table.refreshes == before, "unchanged figures must not repaint the table"
        assert [shown(table, r) for r in range(8)] == painted

        # One GPU blips to 1 %: one refresh, of that row, and only its two changed cells
        # are rendered again (not its sparkline, not the other rows).
        cached = {key: table._cell_render_cache.get(key) for key in table._cell_render_cache.keys()}
        rows = list(GPU_ROWS)
        rows[6] = ("gpu-6", ("6 H200", "  1%", GPU_ROWS[6][1][2], "135W"))
        table.set_rows(rows)
        assert table.refreshes == before + 1
        await pilot.pause()
        assert shown(table, 6).split() == ["6", "H200", "1%", "▁▁▁▁", "135W"]
        assert [shown(table, r) for r in range(8) if r != 6] == [p for r, p in enumerate(painted) if r != 6]
        rendered = {(k[0].value, k[1].value) for k in table._cell_render_cache.keys()
                    if cached.get(k) is not table._cell_render_cache.get(k)}
        assert rendered == {("gpu-6", "Util"), ("gpu-6", "Power")}


async def test_the_cursor_row_shows_its_new_value():
    app = CountingApp()
    async with app.run_test(size=(80, 14)) as pilot:
        table = app.query_one(CountingTable)
        table.set_rows(GPU_ROWS)
        table.focus()
        table.move_cursor(row=2)
        await pilot.pause()
        assert shown(table, 2).split()[2] == "0%"
        rows = list(GPU_ROWS)
        rows[2] = ("gpu-2", ("2 H200", " 57%", Text("  ▁▁▁▇", style="green"), "400W"))
        table.set_rows(rows)
        await pilot.pause()
        assert shown(table, 2).split() == ["2", "H200", "57%", "▁▁▁▇", "400W"]
        table.move_cursor(row=3)  # the line without the cursor is rendered from the new value too
        await pilot.pause()
        assert shown(table, 2).split() == ["2", "H200", "57%", "▁▁▁▇", "400W"]


async def test_a_cell_that_only_changes_colour_is_written():
    """rich's Text == ignores the Text's own style: '50%' turning from green to red must
    still be repainted."""
    app = OneTable()
    async with app.run_test(size=(60, 10)) as pilot:
        table = app.query_one(DiffTable)
        table.set_rows([("x", ("cursor", "here")), ("a", ("alpha", Text("50%", style="green")))])
        await pilot.pause()
        table.set_rows([("x", ("cursor", "here")), ("a", ("alpha", Text("50%", style="red")))])
        await pilot.pause()
        assert table.get_row_at(1)[1].style == "red"
        painted = [segment for segment in table.render_line(2) if segment.text.strip() == "50%"]
        assert painted and painted[0].style is not None and painted[0].style.color.name == "red"
