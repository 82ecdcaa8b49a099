"""Pilot tests of the log pane on a real file that a writer appends to."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from pdtui.ui.observe.logpane import LogPane

pytestmark = pytest.mark.timeout(60)


class PaneApp(App):
    def __init__(self, path: Path, window: int = 500) -> None:
        super().__init__()
        self.path = path
        self.window = window

    def compose(self) -> ComposeResult:
        yield LogPane(self.path, window=self.window, id="pane")

    def on_mount(self) -> None:
        self.query_one(LogPane).log_view.focus()


def vllm(i: int, level: str = "INFO", msg: str | None = None) -> str:
    return f"{level} 06-02 17:49:{i % 60:02d} [engine.py:{i}] {msg or f'line number {i}'}"


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


@pytest.fixture
def logfile(tmp_path) -> Path:
    path = tmp_path / "decoder-0.log"
    path.write_text("".join(vllm(i) + "\n" for i in range(300)))
    return path


async def test_follow_pause_and_new_lines_counter(logfile):
    app = PaneApp(logfile)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1:] == [299])
        assert pane.following
        append(logfile, [vllm(i) for i in range(300, 320)])
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1] == 319)
        assert pane.log_view.is_vertical_scroll_end
        # Scroll up: the pane pauses and counts what arrives instead of moving the text.
        await pilot.press("pageup", "pageup")
        append(logfile, [vllm(i) for i in range(320, 345)])
        await wait_for(pilot, lambda: pane.new_lines == 25)
        assert not pane.following
        assert pane.shown_line_numbers()[-1] == 319
        assert "PAUSED +25 new lines" in pane.status_text
        # End: follow again, the new lines are there and none is lost or doubled.
        await pilot.press("end")
        await wait_for(pilot, lambda: pane.following and pane.shown_line_numbers()[-1] == 344)
        nums = pane.shown_line_numbers()
        assert nums == list(range(nums[0], 345))
        append(logfile, [vllm(i) for i in range(345, 350)])
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1] == 349)
        assert pane.new_lines == 0


async def test_window_is_bounded_and_reads_back_from_the_file(logfile):
    app = PaneApp(logfile, window=100)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1:] == [299])
        assert len(pane.shown_line_numbers()) == 100
        assert pane.log_view.line_count == 100
        await pilot.press("g")  # the top of the file comes back from disk
        await wait_for(pilot, lambda: pane.shown_line_numbers()[:1] == [0])
        assert pane.shown_lines()[0] == vllm(0)
        assert not pane.following


async def test_search_next_previous_and_filter(logfile):
    append(logfile, [vllm(1000 + k, msg=f"needle {k}") for k in range(3)] + [vllm(i) for i in range(400, 420)])
    app = PaneApp(logfile, window=50)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.follower.total_lines == 323)
        await pilot.press("slash")
        await pilot.press(*"needle", "enter")
        await wait_for(pilot, lambda: len(pane.matches) == 3 and pane.current_match == 2)
        assert pane.matches == [300, 301, 302]
        assert "/needle 3/3" in pane.status_text
        await pilot.press("N")
        await wait_for(pilot, lambda: pane.current_match == 1)
        await pilot.press("N", "N")
        await wait_for(pilot, lambda: pane.current_match == 0)
        assert not pane.following
        visible_top = int(pane.log_view.scroll_y)
        shown = pane.shown_line_numbers()
        assert 300 in shown[visible_top: visible_top + pane.log_view.size.height]
        await pilot.press("n")
        await wait_for(pilot, lambda: pane.current_match == 1)
        # A match that arrives later is found by n as well.
        append(logfile, [vllm(2000, msg="needle late")])
        await wait_for(pilot, lambda: pane.follower.total_lines == 324)
        await pilot.press("n", "n")
        await wait_for(pilot, lambda: pane.current_match == 3)
        assert pane.matches[-1] == 323
        # f: only the matching lines, from the whole file, and new ones as they come.
        await pilot.press("f")
        await wait_for(pilot, lambda: pane.shown_line_numbers() == [300, 301, 302, 323])
        append(logfile, [vllm(5000), vllm(5001, msg="another needle")])
        await wait_for(pilot, lambda: pane.shown_line_numbers() == [300, 301, 302, 323, 325])
        assert "filter 'needle'" in pane.status_text
        await pilot.press("f")
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1] == 325 and len(pane.shown_line_numbers()) == 50)


async def test_level_filter_and_last_error(tmp_path):
    path = tmp_path / "prefill-0.log"
    lines = [vllm(i) for i in range(50)]
    lines[10] = vllm(10, "WARNING", "cache nearly full")
    lines[20] = vllm(20, "ERROR", "engine core died")
    lines[30] = "[2025-06-02 17:50:11,239] LMCache WARNING: Failed to allocate memory object, retrying... (x.py:1:lmcache.x)"
    lines[40] = vllm(40, "ERROR", "second failure")
    path.write_text("\n".join(lines) + "\n")
    app = PaneApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: len(pane.shown_line_numbers()) == 50)
        await pilot.press("l")
        await wait_for(pilot, lambda: pane.shown_line_numbers() == [10, 20, 30, 40])
        assert "level warn+err" in pane.status_text
        await pilot.press("l")
        await wait_for(pilot, lambda: pane.shown_line_numbers() == [20, 40])
        append(path, [vllm(51, "ERROR", "third"), vllm(52)])
        await wait_for(pilot, lambda: pane.shown_line_numbers() == [20, 40, 50])
        await pilot.press("l")
        await wait_for(pilot, lambda: len(pane.shown_line_numbers()) == 52)
        await pilot.press("e")
        await wait_for(pilot, lambda: "last error: line 51" in pane.status_text)
        assert pane.follower.last_error_line == 50


async def test_save_writes_the_view_and_wrap_timestamps_toggle(logfile, tmp_path):
    app = PaneApp(logfile)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1:] == [299])
        await pilot.press("t")
        await wait_for(pilot, lambda: pane.log_view.lines[-1] == "INFO [engine.py:299] line number 299")
        await pilot.press("t", "w")
        append(logfile, [vllm(300, msg="x" * 150)])
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1] == 300)
        assert pane.log_view.lines[-1].startswith("  ") and len(pane.log_view.lines) > len(pane.shown_line_numbers())
        await pilot.press("s")
        await wait_for(pilot, lambda: pane.last_saved is not None)
        saved = pane.last_saved.read_text().splitlines()
        assert saved == [vllm(i) for i in range(300)] + [vllm(300, msg="x" * 150)]
        # With a filter, save takes every matching line of the file, not just the window.
        await pilot.press("slash", *"number 29", "enter")
        await wait_for(pilot, lambda: len(pane.matches) == 11)
        await pilot.press("f")
        await wait_for(pilot, lambda: len(pane.shown_line_numbers()) == 11)
        first = pane.last_saved
        await pilot.press("s")
        await wait_for(pilot, lambda: pane.last_saved not in (None, first))
        assert pane.last_saved.read_text().splitlines() == [vllm(29)] + [vllm(i) for i in range(290, 300)]


async def test_escape_closes_the_search_box_only(logfile):
    app = PaneApp(logfile)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: pane.shown_line_numbers()[-1:] == [299])
        await pilot.press("slash")
        box = pane.query_one("#log-search")
        assert box.has_class("shown") and box.has_focus
        await pilot.press("escape")
        assert not box.has_class("shown") and pane.log_view.has_focus


async def test_own_polling_lines_hidden_by_default_and_P_shows_them(tmp_path):
    path = tmp_path / "decoder1.log"
    poll = '(APIServer pid=7) INFO:     127.0.0.1:{} - "GET /{} HTTP/1.1" 200 OK'
    lines = []
    for i in range(30):
        lines += [poll.format(40000 + i, "health"), poll.format(41000 + i, "metrics"), vllm(i, msg=f"request {i} done")]
    path.write_text("".join(line + "\n" for line in lines))
    app = PaneApp(path)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.query_one(LogPane)
        await wait_for(pilot, lambda: len(pane.shown_lines()) == 30)
        assert not any("GET /" in line for line in pane.shown_lines())
        append(path, [poll.format(42000, "metrics"), vllm(99, msg="after")])
        await wait_for(pilot, lambda: pane.shown_lines()[-1:] == [vllm(99, msg="after")])
        assert len(pane.shown_lines()) == 31
        await pilot.press("P")
        await wait_for(pilot, lambda: len(pane.shown_lines()) == 92)
        assert "polling shown" in pane.status_text
        await pilot.press("P")
        await wait_for(pilot, lambda: len(pane.shown_lines()) == 31)
    assert path.read_text().count("GET /") == 61  # the file keeps every line
