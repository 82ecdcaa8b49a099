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
    # Names and headers are never cut.
    for cut in ("decod…", "deco…", "pref…", "prefi…", "kv_w…", "prefiller1…", "decoder1…"):
        assert cut not in text, text
    assert "kv p50" in text


async def test_kv_view_at_80_columns_shows_request_ids_whole_in_a_short_form():
    """80x24: each request id readable (no "…"), short but still telling the requests apart,
    and one request the same in the engines' table and the proxy's hand-off table."""
    import re

    from pdtui.ui.observe.kvview import short_request_ids

    kv, pairs = _kv_from_the_real_run(), recorded()
    name = url_namer({7100: "prefiller1", 7200: "decoder1"})
    text = await _screen_text(KvTransferView(kv, pairs=pairs, name=name), (80, 24))
    transfers, handoffs = kv.slowest(), pairs.slowest()
    assert transfers and handoffs
    short = short_request_ids([t.request_id for t in transfers if t.request_id] + [h.req_id for h in handoffs])
    slow_part = text[text.index("slowest recent transfers"):]
    for value in short.values():
        assert re.search(rf"│ {re.escape(value)}\s+│", slow_part), (value, text)  # whole in its cell
    assert "…" not in slow_part.replace("tokens", ""), text  # no cell of either table is cut
    assert len(set(short.values())) == len({re.search(r"[0-9a-f]{16,}", f).group(0) for f in short})
    # The engines' cmpl-<hex>-0-<suffix> and the proxy's <hex> of one request: one short form.
    engine_id = next(t.request_id for t in transfers if t.request_id and t.request_id.startswith("cmpl-"))
    core = re.search(r"[0-9a-f]{16,}", engine_id).group(0)
    if core in short:
        assert short[engine_id] == short[core]
    wide = await _screen_text(KvTransferView(kv, pairs=pairs, name=name), (200, 60))
    assert engine_id in wide  # wide screens keep the whole id


def test_short_request_ids_grow_until_they_differ():
    from pdtui.ui.observe.kvview import short_request_ids

    ids = ["cmpl-abcdef0123456789aaaa-0-11111111", "cmpl-abcdef0123456789bbbb-0-22222222",
           "abcdef0123456789aaaa", "plain-id"]
    short = short_request_ids(ids)
    assert short[ids[0]] == short[ids[2]] == "abcdef0123456789a"
    assert short[ids[1]] == "abcdef0123456789b"
    assert short["plain-id"] == "plain-id"
    assert short_request_ids(["cmpl-0123456789abcdef0123-0-ffffffff"]) == {"cmpl-0123456789abcdef0123-0-ffffffff": "01234567"}
    assert short_request_ids([]) == {}


async def test_kv_view_empty_state_is_one_line():
    view = KvTransferView(KvTransferStats(clock=lambda: 0.0), pairs=PairStats(), name=lambda u: u)
    text = await _screen_text(view, (80, 24))
    [line] = [ln for ln in text.splitlines() if "no requests" in ln]
    assert "no requests through the proxy yet" in line, text


class PlaygroundApp(App):
    def compose(self) -> ComposeResult:
        from pdtui.ui.observe.playground import Playground

        yield Playground("http://127.0.0.1:9")  # nothing listens: only the form is exercised


async def test_playground_fields_are_labelled_enter_runs_and_run_is_two_tabs_away():
    from textual.widgets import Button, Input, Label, Static

    from pdtui.ui.observe.latency import _ms

    app = PlaygroundApp()
    async with app.run_test(size=(80, 24)) as pilot:
        labels = " ".join(str(label.render()) for label in app.query(Label))
        for label in ("requests", "at once", "prompt tok", "out tok", "max tok"):
            assert label in labels, labels
        app.query_one("#pg-prompt", Input).focus()
        await pilot.press("tab", "tab")
        assert isinstance(app.focused, Button) and app.focused.id == "pg-run"
        # Enter in a load-run field starts the run (a bad number is named, not raised).
        field = app.query_one("#pg-n", Input)
        field.focus()
        field.value = "lots"
        await pilot.press("enter")
        assert "requests: 'lots' is not a whole number" in str(app.query_one("#pg-message", Static).render())
        field.value = "2"
        await pilot.press("enter")
        from pdtui.ui.observe.playground import Playground
        from tests.ui.test_app import wait_for

        playground = app.query_one(Playground)
        await wait_for(pilot, lambda: playground.last_summary is not None, 30, "the run's summary")
        assert playground.last_summary.requests == 2  # it ran (nothing listens: both failed)
    assert _ms(0.0123) == "12.3 ms"
