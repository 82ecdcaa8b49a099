"""The dashboard against real H200 data: an NVML reading recorded on the lent H200 and the
dashboard captured there with tmux while real vLLM + LMCache engines ran
(tests/fixtures/real-run/nixl/dashboard-tmux.txt, see tests/gpu/README.md)."""

from __future__ import annotations

import re

from pdtui.gpus.recorded_source import RecordedSource
from pdtui.model.presets import resolve_profile_path
from pdtui.ui.app import PdtuiApp
from pdtui.ui.gpu_feed import GpuReading, GpuUpdate
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"
CAPTURE = FIXTURES / "real-run" / "nixl" / "dashboard-tmux.txt"
HOLDING = FIXTURES / "gpus" / "h200_pdtui_gpus_while_holding.json"


def _lines(text: str) -> list[str]:
    return [line.strip("│ ").rstrip() for line in text.splitlines()]


def test_real_capture_shows_the_engines_on_the_gpu():
    lines = _lines(CAPTURE.read_text())
    gpu_row = next(line for line in lines if line.startswith("0 H200"))
    # Two EngineCores (prefiller + decoder, 0.25 of the GPU each) attributed to pdtui's instances.
    assert re.search(r"\b72/140G\b", gpu_row)
    assert gpu_row.split()[-2:] == ["2", "decoder1,prefiller1"]
    states = {line.split()[0]: line.split()[4] for line in lines if line.split()[:1] in (["proxy"], ["decoder1"], ["prefiller1"])}
    assert states == {"proxy": "ready", "decoder1": "ready", "prefiller1": "ready"}


async def test_dashboard_renders_a_real_h200_reading_like_the_capture():
    inventory = RecordedSource(HOLDING).poll()
    assert inventory.gpus[0].name == "NVIDIA H200"
    app = PdtuiApp(resolve_profile_path("h200-tiny-1p1d"), offer_reattach=False, start_feeds=False, keymap={})
    async with app.run_test(size=(158, 40)) as pilot:
        await pilot.pause()
        app.post_message(GpuUpdate(GpuReading(inventory, ())))
        await pilot.pause(0.2)
        screen = _lines(_svg_text(app))
    # The cockpit (issue 14) has the capture's figures plus five-minute history columns;
    # the process count moved to the drill-down.
    header = next(line for line in screen if line.startswith("GPU "))
    assert header.split() == "GPU Util Util 5m Memory Mem 5m Temp Power Held by".split()
    row = next(line for line in screen if line.startswith("0 H200"))
    assert re.search(r"\b9/140G\b", row), row  # 9.2 GB held by the recorded torch process
    figures = [cell for cell in row.split() if not set(cell) <= set("▁▂▃▄▅▆▇█")]
    assert figures[-4:] == ["9/140G", "37C", "100W", "-"], row


def _svg_text(app) -> str:
    import html

    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg, re.S):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3)).replace("\xa0", " ")))
    return "\n".join("".join(t for _, t in sorted(parts)) for _, parts in sorted(rows.items()))
