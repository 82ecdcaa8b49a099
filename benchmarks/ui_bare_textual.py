"""The baseline the UI benchmarks compare pdtui against: a bare Textual app.

A header, an 8-row DataTable and a footer — what perf-anchors.md calls "a bare Textual app"
— and, with `--refresh S`, "a minimal Textual GPU table": every S seconds it changes the
utilization/memory/temperature/power cells of its 8 rows (synthetic numbers; there is no
NVML on the development machine) through `update_cell`, the cheapest way Textual offers.

Its rows read `0 H200` .. `7 H200`, like the demo's: `ui_startup.py` waits for all eight in both,
so both programs are timed by one rule.

    python benchmarks/ui_bare_textual.py [--refresh 1.0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Footer, Header

COLUMNS = ("GPU", "Util", "Memory", "Temp", "Power", "Procs", "Held by")


def gpu_cells(index: int, now: float) -> tuple[str, ...]:
    util = 50 + 45 * math.sin(now / 7 + index)
    return (f"{index} H200", f"{util:3.0f}%", f"{60 + index}/141G", f"{40 + int(util) // 10}C", f"{300 + int(util) * 3}W", "1", "-")


class BareTable(App):
    TITLE = "SIMULATION bare Textual"

    def __init__(self, refresh_s: float | None) -> None:
        super().__init__()
        self.refresh_s = refresh_s

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.column_keys = [table.add_column(name, key=name) for name in COLUMNS]
        now = time.time()
        for index in range(8):
            table.add_row(*gpu_cells(index, now), key=str(index))
        if self.refresh_s:
            self.set_interval(self.refresh_s, self.tick)

    def tick(self) -> None:
        table = self.query_one(DataTable)
        now = time.time()
        for index in range(8):
            for column, value in enumerate(gpu_cells(index, now)[1:5], start=1):
                table.update_cell(str(index), self.column_keys[column], value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", type=float, default=None, help="change the table every S seconds")
    args = parser.parse_args()
    BareTable(args.refresh).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
