"""`pdtui --demo --tour`: the demo walks its own screens, one caption a step; any key ends it.

    tour = Tour(app, pace_s=4.0)   # before app.run(): the app starts it once mounted

The steps (pdtui.ui.tour_steps) drive the real app the way an operator would: they post the
app's typed requests (pdtui.ui.messages) or run the screens' own actions, answer the
questions those raise, and wait on the deployment's state (ready, crashed, ready again),
never on fixed sleeps; only the pause that lets the audience read a caption is timed
(`pace_s`: `--tour-pace` or PDTUI_TOUR_PACE, 0 in the tests).

Any key or click while the tour runs takes over: the key is used for nothing else, the
tour stops, a question it raised is closed (cancelled), a fault it injected is recovered,
and the caption goes; the operator has the app as `pdtui --demo` leaves it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual import events
from textual.screen import ModalScreen
from textual.widgets import Static

from pdtui.ui.tour_steps import TOUR_STEPS, FaultRecord, TourError, TourStep, recover

if TYPE_CHECKING:
    from pdtui.ui.app import PdtuiApp

__all__ = ["Tour", "TourCaption", "TourError"]


class TourCaption(Static):
    """The tour's one line, over the footer of whichever screen is on top."""

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)
        self.text = text

    DEFAULT_CSS = """
    TourCaption { dock: bottom; height: 1; width: 100%; padding: 0 1;
                  background: $panel; color: $text-warning; text-style: bold; }
    """


@dataclass
class Tour:
    app: PdtuiApp
    pace_s: float  # the pause per step (pdtui.ui.cli.tour_pace: --tour-pace, PDTUI_TOUR_PACE)
    steps: list[TourStep] | None = None
    reached: list[str] = field(default_factory=list)  # step names, in the order shown
    captions: list[tuple[str, str]] = field(default_factory=list)  # (step, caption) as shown
    screens: dict[str, str] = field(default_factory=dict)  # step -> the screen it paused on
    fault: FaultRecord = field(default_factory=FaultRecord)
    outcome: str | None = None  # "finished", "taken over", or why it stopped
    running: bool = False

    def __post_init__(self) -> None:
        if self.steps is None:
            self.steps = list(TOUR_STEPS)
        self.app.tour = self
        self._worker: Any = None
        self._caption = ""
        self._widget: TourCaption | None = None
        self._step = ""
        self._modal: ModalScreen | None = None  # a question the tour raised and has not answered

    # --- life -----------------------------------------------------------------------------
    def start(self) -> None:
        self.running = True
        self._worker = self.app.run_worker(self._walk(), group="tour", exit_on_error=False)

    async def _walk(self) -> None:
        assert self.steps is not None
        try:
            for number, step in enumerate(self.steps, start=1):
                self._step = step.name
                self.reached.append(step.name)
                self.caption(f"tour {number}/{len(self.steps)}  {step.caption}")
                await step.run(self)
                self.screens[step.name] = type(self.app.screen).__name__
                self._keep_caption()
                await self.pause()
            self.outcome = "finished"
        except Exception as exc:  # a step that cannot go on: said once, nothing left half done
            why = str(exc) if isinstance(exc, TourError) else f"{type(exc).__name__}: {exc}"
            self.outcome = f"stopped at {self._step}: {why}"
            self.app.notify(f"tour stopped at {self._step}: {why}", severity="error", timeout=15)
            self._leave_nothing_half_done()
        finally:
            self.running = False
            self._remove_caption()

    def takes_over(self, event: events.Event) -> bool:
        """The app's hook for every input event: a key or a click while the tour runs ends
        the tour and is used for nothing else (True: the app drops it)."""
        if not self.running or not isinstance(event, (events.Key, events.MouseDown)):
            return False
        if getattr(event, "is_forwarded", False):
            return False
        self.stop()
        return True

    def stop(self) -> None:
        """The operator takes over: nothing the tour started is left half done."""
        if not self.running:
            return
        self.running = False
        self.outcome = "taken over"
        if self._worker is not None:
            self._worker.cancel()
        self._leave_nothing_half_done()
        self._remove_caption()
        self.app.notify("tour stopped: the keys are yours (? for help)", timeout=5)

    def _leave_nothing_half_done(self) -> None:
        modal, self._modal = self._modal, None
        if modal is not None and modal.is_current:
            modal.dismiss(None)  # a question the tour asked: cancelled, nothing happens
        fault = self.fault
        if fault.pid is not None and not fault.recovered:
            recover(self)  # the fault the tour injected does not outlive it

    # --- what steps use -------------------------------------------------------------------
    async def pause(self, factor: float = 1.0) -> None:
        """The audience reads the caption (the one timed wait of the tour)."""
        deadline = time.monotonic() + self.pace_s * factor
        while time.monotonic() < deadline:
            self._keep_caption()
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    async def until(self, condition: Callable[[], bool], what: str, timeout_s: float = 120.0,
                    failed: Callable[[], str | None] | None = None) -> None:
        """Wait for `condition` (checked 10 times a second); TourError after `timeout_s` or
        when `failed` says why it never will."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            why = failed() if failed is not None else None
            if why:
                raise TourError(why)
            if time.monotonic() > deadline:
                raise TourError(f"{what} did not happen within {timeout_s:g} s")
            self._keep_caption()
            await asyncio.sleep(0.1)
        self._keep_caption()

    async def ask_and_answer(self, is_question: Callable[[Any], bool], answer: str, what: str) -> None:
        """A request raised a question (a ModalScreen): show it, then answer it as the
        operator would."""
        def asked() -> bool:  # on screen and mounted (its button focused): it can be answered cleanly
            screen = self.app.screen
            return is_question(screen) and isinstance(screen, ModalScreen) and screen.focused is not None

        await self.until(asked, what, 30)
        screen = self.app.screen
        self._modal = screen if isinstance(screen, ModalScreen) else None
        await self.pause(0.5)
        modal, self._modal = self._modal, None
        if modal is not None and modal.is_current:
            modal.dismiss(answer)

    def opened(self, modal: ModalScreen) -> None:
        """A modal the tour opened and will close (or that takeover closes)."""
        self._modal = modal

    def closed(self) -> None:
        modal, self._modal = self._modal, None
        if modal is not None and modal.is_current:
            modal.dismiss(None)

    def caption(self, text: str) -> None:
        self._caption = text
        self.captions.append((self._step, text))
        self._keep_caption()

    def _keep_caption(self) -> None:
        """The caption sits on the screen on top (a question or a new screen may have come)."""
        if not self.running or not self._caption or not self.app.screen_stack:
            return
        screen, shown = self.app.screen, self._widget
        if not screen.is_mounted:
            return  # composing: mounted into on the next tick
        if shown is not None and shown.is_attached and shown.screen is screen:
            if shown.text != self._caption:
                shown.text = self._caption
                shown.update(self._caption)
            return
        self._remove_caption()
        self._widget = TourCaption(self._caption)
        screen.mount(self._widget)

    def _remove_caption(self) -> None:
        shown, self._widget = self._widget, None
        if shown is not None and shown.is_attached:
            try:
                shown.remove()
            except Exception:  # the app is closing: its screens go with their captions
                pass
