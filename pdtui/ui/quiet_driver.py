"""A Linux terminal driver whose threads sleep until there is something to do.

Textual's LinuxDriver reads keys on a thread that wakes every 0.1 s whether or not a key
came: to see whether the app asked it to stop, and to time out a lone ESC (an Escape key
or the start of a sequence?). On an idle cockpit those ten wake-ups a second were 0.13 to
0.17 % of a core on the H200 host -- a tenth of the whole budget.

`QuietLinuxDriver` waits on the terminal and on a wake pipe. The stop request writes to
the pipe (the exit event is a `WakingEvent`), and the wait has a timeout only while the
parser holds a partial sequence, exactly as long as the parser's own deadline. Keys,
mouse, paste, resize replies and suspend/resume go through Textual's parser and
`process_message` unchanged.

Output: Textual writes a frame as three items for its writer thread (begin-synchronized-
update, the frame, end): each may wake that thread and be its own write to the terminal.
Here the three go as one item, so a frame is one wake-up and one write.

`PdtuiApp.get_driver_class` picks it wherever Textual would pick LinuxDriver; a
`TEXTUAL_DRIVER` set by the operator still wins.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.app import SYNC_END, SYNC_START
from textual.drivers.linux_driver import LinuxDriver

__all__ = ["QuietLinuxDriver", "WakingEvent", "parser_deadline"]


class WakingEvent(threading.Event):
    """An Event whose `set()` also writes a byte to a pipe, waking a select on its read end."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd: int | None = wake_fd

    def set(self) -> None:
        super().set()
        fd = self._wake_fd
        if fd is None:
            return
        try:
            os.write(fd, b"x")
        except OSError:  # the pipe is full: the thread wakes anyway and sees the flag
            pass

    def detach(self) -> None:
        """The pipe is about to close: never write to that descriptor number again."""
        self._wake_fd = None


def parser_deadline(parser: XTermParser) -> float | None:
    """When the parser's pending read times out (monotonic), or None when nothing is
    pending. Textual keeps this private; without it we fall back to its 0.1 s pace."""
    try:
        return parser._timeout_time  # noqa: SLF001 - see the docstring
    except AttributeError:
        return get_time() + 0.1


class QuietLinuxDriver(LinuxDriver):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.exit_event = self._waking_event = WakingEvent(self._wake_write)
        self.input_wakes = 0  # select() returns of the input thread (tests, benchmarks)
        self._frame: list[str] | None = None  # a synchronized update being gathered

    def write(self, data: str) -> None:
        if data == SYNC_START:
            self._frame = [data]
            return
        frame = self._frame
        if frame is None:
            super().write(data)
            return
        frame.append(data)
        if data == SYNC_END:
            self._frame = None
            super().write("".join(frame))

    def run_input_thread(self) -> None:
        """Textual's loop, waiting on the terminal and the wake pipe without a fixed tick."""
        selector = selectors.SelectSelector()  # as Textual: works for every tty it supports
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_read, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        fileno, wake_read = self.fileno, self._wake_read

        def process(ready: list[tuple[selectors.SelectorKey, int]]) -> None:
            for key, _mask in ready:
                if key.fd == wake_read:
                    self._drain_wake_pipe()
                    continue
                data = decode(os.read(fileno, 1024 * 4))
                if not data:  # end of input (stdin was a pipe): stop waiting on it, not spin
                    selector.unregister(fileno)
                    continue
                for event in parser.feed(data):
                    self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                deadline = parser_deadline(parser)
                timeout = None if deadline is None else max(0.0, deadline - get_time())
                ready = selector.select(timeout)
                self.input_wakes += 1
                process(ready)
            process([])  # a sequence whose deadline passed as we stopped
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except (EOFError, ParseError):  # an unfinished sequence at exit is dropped, as Textual does
                pass

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        super().close()
        self._waking_event.detach()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass
