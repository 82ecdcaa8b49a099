"""Issue 19, the cockpit: enter on a GPU shows its processes, the focused table's cursor
differs from the other's, start-up states in words, the State column narrows again."""

from __future__ import annotations

from rich.text import Text

from pdtui.ui.rows import InstanceRowData, state_text
from pdtui.ui.screens.dialogs import MessageScreen
from pdtui.ui.widgets.diff_table import DiffTable
from tests.ui.test_app import wait_for
from tests.ui.test_snapshots import inject_gpus, make_app


def test_start_up_states_in_words():
    row = InstanceRowData(name="prefiller1", role="prefiller", gpus=(0,), port=None, state="starting", milestone="lmcache_initialized")
    assert str(state_text(row)) == "starting: LMCache init"
    row = InstanceRowData(name="d", role="decoder", gpus=(1,), port=None, state="starting", milestone="something_new")
    assert str(state_text(row)) == "starting: something new"


async def test_enter_on_a_gpu_and_cursors_and_the_state_column_narrowing():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await inject_gpus(pilot)
        gpu = app.screen.query_one("#gpu-table", DiffTable)
        inst = app.screen.query_one("#instance-table", DiffTable)
        await wait_for(pilot, lambda: gpu.row_count == 8, 10, "the GPU rows")
        # The focused table's cursor is a block, the other's is not.
        assert inst.has_focus
        focused = inst.get_component_rich_style("datatable--cursor")
        blurred = gpu.get_component_rich_style("datatable--cursor")
        assert focused != blurred and blurred.underline and not focused.underline
        gpu.focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageScreen), 10, "the GPU's processes")
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "GPU 1" in text and "no compute process" in text, text
        await pilot.press("escape")
        # A column narrows again once its widest cell is gone.
        table = DiffTable(("Name", "State"))
        await app.screen.mount(table)
        table.set_rows([("a", ("a", Text("starting: LMCache init")))])
        await pilot.pause()
        table.set_rows([("a", ("a", Text("ready")))])
        await pilot.pause()
        assert table.columns[table._column_keys[1]].content_width == len("State")
