"""Choose an instance's GPUs from the live view.

Each GPU row says whether it can be picked and, if not, why: busy with someone else's
process, already given to another instance of this profile, lost, or more GPUs than the
instance's tensor-parallel size. A topology line says whether the chosen GPUs share
NVLink (when NVML tells). Space or a click toggles; enter accepts; esc cancels.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from pdtui.gpus.picking import busy_reason, topology_hint
from pdtui.ui import format as fmt
from pdtui.ui.bindings import bindings_for
from pdtui.model.document import ProfileDocument
from pdtui.ui.gpu_feed import GpuReading
from pdtui.ui.session import session_of
from pdtui.ui.widgets.diff_table import DiffTable
from pdtui.text import plural

PICKER_COLUMNS = ("", "GPU", "Util", "Memory", "Note")


def gpu_claims(doc: ProfileDocument, except_key: str, except_index: int) -> dict[int, list[str]]:
    """GPU index -> names of the other instances of the profile that use it."""
    claims: dict[int, list[str]] = {}
    for role, index, name in doc.instances():
        key = "prefillers" if role == "prefiller" else "decoders"
        if (key, index) == (except_key, except_index):
            continue
        gpus = doc.get(f"{key}[{index}].gpus") or []
        for gpu in gpus if isinstance(gpus, list) else []:
            if isinstance(gpu, int):
                claims.setdefault(gpu, []).append(name)
    return claims


def gpu_note(
    index: int,
    reading: GpuReading,
    claims: dict[int, list[str]],
    chosen: list[int],
    tp_size: int,
) -> tuple[str, str]:
    """(note, style) for one GPU row: why it should not be picked, or '' if it is fine."""
    gpu = reading.inventory.gpu(index)
    if gpu is None:
        return "not on this machine", "red"
    reason = busy_reason(gpu, reading.processes)
    if reason:
        return reason.replace(f"{gpu.label} is ", ""), "red"
    if index in claims:
        return f"given to {', '.join(claims[index])}", "yellow"
    if index not in chosen and len(chosen) >= tp_size:
        return f"TP size {tp_size}: already {len(chosen)} picked", "dim"
    return "", ""


class GpuPickerScreen(ModalScreen[list[int] | None]):
    CSS_PATH = "screens.tcss"  # read when the first screen but the cockpit is shown
    BINDINGS = bindings_for("picker", priority=frozenset({"accept-gpus"}))
    def __init__(self, doc: ProfileDocument, key: str, index: int) -> None:
        super().__init__()
        self.doc = doc
        self.key = key
        self.index = index
        current = doc.get(f"{key}[{index}].gpus") or []
        self.chosen: list[int] = [g for g in current if isinstance(g, int)] if isinstance(current, list) else []
        tp = doc.get(f"{key}[{index}].tensor_parallel_size", 1)
        self.tp_size = tp if isinstance(tp, int) and tp >= 1 else 1
        self.instance_name = str(doc.get(f"{key}[{index}].name", f"{key}[{index}]"))

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"GPUs for {self.instance_name} (TP size {self.tp_size})"
            box.border_subtitle = "space/click toggle · enter OK · esc cancel"
            yield DiffTable(PICKER_COLUMNS, id="picker-table")
            yield Static("", id="picker-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#picker-table", DiffTable).focus()
        self.refresh_rows()

    def on_gpu_reading(self, reading: GpuReading) -> None:
        self.refresh_rows()

    def refresh_rows(self) -> None:
        reading: GpuReading | None = session_of(self.app).gpu_reading
        try:
            table = self.query_one("#picker-table", DiffTable)
            summary = self.query_one("#picker-summary", Static)
        except NoMatches:  # a reading that arrives as the picker is dismissed
            return
        if reading is None:
            summary.update("Reading GPUs…")
            return
        if reading.inventory.error:
            summary.update(Text(f"No GPUs to pick: {reading.inventory.error}", style="red"))
        claims = gpu_claims(self.doc, self.key, self.index)
        rows = []
        for gpu in reading.inventory.gpus:
            note, style = gpu_note(gpu.index, reading, claims, self.chosen, self.tp_size)
            mark = Text("[x]" if gpu.index in self.chosen else "[ ]", style="bold" if gpu.index in self.chosen else "")
            util = gpu.utilization_gpu
            rows.append(
                (
                    f"gpu-{gpu.index}",
                    (
                        mark,
                        f"{gpu.index} {str(gpu.name).replace('NVIDIA ', '')}",
                        fmt.number(util, "{:.0f}", "%"),
                        fmt.memory_pair(gpu.memory_used, gpu.memory_total),
                        Text(note, style=style),
                    ),
                )
            )
        table.set_rows(rows)
        lines = [f"Chosen: {fmt.gpu_list(sorted(self.chosen))}"]
        if len(self.chosen) != self.tp_size:
            lines.append(f"[$warning]Pick {plural(self.tp_size, 'GPU')}: tensor_parallel_size is {self.tp_size}.[/]")
        hint = topology_hint(reading.inventory, self.chosen)
        if hint:
            lines.append(hint)
        summary.update("\n".join(lines))

    def _index_at_cursor(self) -> int | None:
        key = self.query_one("#picker-table", DiffTable).selected_key()
        return int(key.split("-", 1)[1]) if key else None

    def _toggle(self, index: int | None) -> None:
        if index is None:
            return
        if index in self.chosen:
            self.chosen.remove(index)
        elif len(self.chosen) >= self.tp_size:
            self.notify(
                f"{self.instance_name} has tensor_parallel_size {self.tp_size}: unpick a GPU first (or raise TP size in the form)",
                severity="warning",
            )
            return
        else:
            reading = session_of(self.app).gpu_reading
            if reading is not None:
                note, style = gpu_note(index, reading, gpu_claims(self.doc, self.key, self.index), self.chosen, self.tp_size)
                if style == "red" or style == "yellow":
                    self.notify(f"GPU {index}: {note} (picked anyway)", severity="warning")
            self.chosen.append(index)
        self.refresh_rows()

    def action_toggle_gpu(self) -> None:
        self._toggle(self._index_at_cursor())

    def on_data_table_row_selected(self, event: DiffTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self._toggle(int(event.row_key.value.split("-", 1)[1]))

    def action_accept(self) -> None:
        if not self.chosen:
            self.notify("pick at least one GPU (space), or esc to cancel", severity="warning")
            return
        self.dismiss(sorted(self.chosen))

    def action_cancel(self) -> None:
        self.dismiss(None)
