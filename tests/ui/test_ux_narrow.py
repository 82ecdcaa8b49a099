"""Issue 19, 80×24: the KV view keeps instance names whole (shorter columns instead), the
empty state is one line; the cockpit's KV strip too."""

from __future__ import annotations

from textual.app import App, ComposeResult

from pdtui.telemetry.kvstats import KvTransferStats, url_namer
from pdtui.telemetry.logparse import LogScanner
from pdtui.telemetry.pairs import PairStats
from pdtui.ui.observe.kvview import KvTransferView
from tests.observe.test_pairs import RUN, recorded


def _kv_from_the_real_run() -> KvTransferStats:
    kv = KvTransferStats(clock=lambda: 0.0)
    for name, role in (("prefiller1", "prefiller"), ("decoder1", "decoder")):
        scanner = LogScanner(role)
        events = []
        with open(RUN / f"{name}.log", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                events.extend(scanner.feed(line))
        kv.feed(name, role, events)
    return kv


class ViewApp(App):
    def __init__(self, view: KvTransferView) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        yield self.view


async def _screen_text(view: KvTransferView, size: tuple[int, int]) -> str:
    app = ViewApp(view)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        view.refresh_view()
        await pilot.pause()
        return _export(app)


def _export(app: App) -> str:
    from rich.console import Console

    console = Console(width=app.size.width, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(app.query_one(KvTransferView).shown)
    return console.export_text()


async def test_kv_view_at_80_columns_keeps_names_whole():
    name = url_namer({7100: "prefiller1", 7200: "decoder1"})
    view = KvTransferView(_kv_from_the_real_run(), pairs=recorded(), name=name)
    text = await _screen_text(view, (80, 24))
    assert "prefiller1 → decoder1" in text, text
    assert "decoder1 " in text and "prefiller1 " in text
    # Request ids may be cut; names and headers never.
    for cut in ("decod…", "deco…", "pref…", "prefi…", "kv_w…", "prefiller1…", "decoder1…"):
        assert cut not in text, text
    assert "kv p50" in text


async def test_kv_view_empty_state_is_one_line():
    view = KvTransferView(KvTransferStats(clock=lambda: 0.0), pairs=PairStats(), name=lambda u: u)
    text = await _screen_text(view, (80, 24))
    [line] = [ln for ln in text.splitlines() if "no requests" in ln]
    assert "no requests through the proxy yet" in line, text
