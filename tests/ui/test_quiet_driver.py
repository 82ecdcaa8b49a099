"""The terminal driver's input thread sleeps until a key, a pending ESC's deadline or the
stop request: keys and a lone Escape still arrive, an idle terminal wakes it not once, and
stopping it is prompt (a real thread reading a real pipe)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

from textual import events

from pdtui.ui.quiet_driver import QuietLinuxDriver


class _App:
    """What the driver posts to: collects the events on the test's loop."""

    def __init__(self) -> None:
        self.keys: asyncio.Queue[str] = asyncio.Queue()

    async def _post_message(self, message) -> bool:
        if isinstance(message, events.Key):
            await self.keys.put(message.key)
        return True


async def test_keys_and_a_lone_escape_arrive_and_an_idle_terminal_never_wakes_the_thread():
    handlers = signal.getsignal(signal.SIGTSTP), signal.getsignal(signal.SIGCONT)
    app = _App()
    driver = QuietLinuxDriver(app, mouse=False, size=(80, 24))  # type: ignore[arg-type]
    read_end, write_end = os.pipe()
    driver.fileno = read_end
    thread = threading.Thread(target=driver._run_input_thread, daemon=True)
    thread.start()
    try:
        os.write(write_end, b"a")
        assert await asyncio.wait_for(app.keys.get(), 10) == "a"
        os.write(write_end, b"\x1b")  # Escape, or the start of a sequence: the parser's deadline says
        assert await asyncio.wait_for(app.keys.get(), 10) == "escape"

        wakes = driver.input_wakes
        await asyncio.sleep(0.5)  # Textual's driver wakes five times in this half second
        assert driver.input_wakes == wakes

        started = time.monotonic()
        driver.exit_event.set()
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
        assert time.monotonic() - started < 5
    finally:
        driver.exit_event.set()
        driver.close()
        os.close(read_end)
        os.close(write_end)
        signal.signal(signal.SIGTSTP, handlers[0])
        signal.signal(signal.SIGCONT, handlers[1])


def test_the_app_picks_it_where_textual_would_pick_its_linux_driver(monkeypatch):
    from textual.drivers.linux_driver import LinuxDriver

    from pdtui.ui.app import PdtuiApp

    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    app = PdtuiApp(None, demo=True, start_feeds=False, offer_reattach=False)
    assert app.driver_class is QuietLinuxDriver and issubclass(app.driver_class, LinuxDriver)


async def test_a_synchronized_frame_reaches_the_writer_thread_as_one_write():
    from textual.app import SYNC_END, SYNC_START

    handlers = signal.getsignal(signal.SIGTSTP), signal.getsignal(signal.SIGCONT)
    driver = QuietLinuxDriver(_App(), mouse=False, size=(80, 24))  # type: ignore[arg-type]

    class Writer:
        def __init__(self) -> None:
            self.items: list[str] = []

        def write(self, text: str) -> None:
            self.items.append(text)

    writer = Writer()
    driver._writer_thread = writer  # type: ignore[assignment]
    try:
        driver.write("\x1b[?25l")  # outside a frame: as it comes
        driver.write(SYNC_START)
        driver.write("the frame")
        assert writer.items == ["\x1b[?25l"]  # gathered until the frame ends
        driver.write(SYNC_END)
        assert writer.items == ["\x1b[?25l", SYNC_START + "the frame" + SYNC_END]
    finally:
        driver._writer_thread = None
        driver.close()
        signal.signal(signal.SIGTSTP, handlers[0])
        signal.signal(signal.SIGCONT, handlers[1])
