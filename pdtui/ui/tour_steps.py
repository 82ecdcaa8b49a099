"""The tour's steps: what each one says, does and waits for (pdtui.ui.tour runs them).

GPU view -> GPU picker -> editor -> launch -> cockpit -> KV transfer -> a fault (a decoder
killed with SIGKILL) -> its recovery (the supervisor's restart) -> playground (a load run).
Each step acts through the app's own paths: the typed requests of pdtui.ui.messages, or a
screen's action (the one its key binding runs), and waits on what the deployment reports.
The picker is cancelled, so the profile is never changed; the fault is only ever injected
into a simulated engine of the deployment the tour launched.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pdtui.ui.messages import LaunchRequested, LoadRunRequested, RestartRequested, ShowObserve
from pdtui.ui.session import LOAD_JOB

__all__ = ["TOUR_STEPS", "FaultRecord", "Tour", "TourError", "TourStep", "recover"]


class TourError(Exception):
    """A step's condition did not come true (the tour ends and says which)."""


@dataclass
class FaultRecord:
    """The fault the tour injected, and what the supervisor made of it."""

    instance: str = ""
    pid: int | None = None
    crashed_seen: bool = False
    recovered: bool = False
    injected_at: float | None = None


class Tour(Protocol):
    """What a step may use of the tour that runs it (pdtui.ui.tour.Tour)."""

    app: Any  # the PdtuiApp
    fault: FaultRecord

    async def until(self, condition: Callable[[], bool], what: str, timeout_s: float = ...,
                    failed: Callable[[], str | None] | None = ...) -> None: ...

    async def ask_and_answer(self, is_question: Callable[[Any], bool], answer: str, what: str) -> None: ...

    def opened(self, modal: Any) -> None: ...

    def closed(self) -> None: ...


@dataclass(frozen=True)
class TourStep:
    name: str
    caption: str  # one line, shown while the step acts and during the pause after it
    run: Callable[[Tour], Awaitable[None]]


def _status(tour: Tour) -> Any:
    return tour.app.session.status()


def _state(tour: Tour, name: str) -> str | None:
    status = _status(tour)
    inst = next((i for i in status.instances if i.name == name), None) if status is not None else None
    return None if inst is None else inst.state.value


def _cockpit(tour: Tour) -> Any:
    from pdtui.ui.screens.dashboard import CockpitScreen

    tour.app.action_show_dashboard()
    screen = tour.app.screen
    return screen if isinstance(screen, CockpitScreen) else None


def _select_instance(tour: Tour, name: str) -> None:
    from pdtui.ui.widgets.diff_table import DiffTable

    screen = _cockpit(tour)
    if screen is None:
        return
    table = screen.query_one("#instance-table", DiffTable)
    try:
        table.move_cursor(row=table.get_row_index(name))
    except Exception:  # not listed yet: the cursor stays where it is
        return
    table.focus()


def _first_decoder(tour: Tour) -> str:
    status = _status(tour)
    names = [i.name for i in status.instances if i.kind == "decoder"] if status is not None else []
    if not names:
        raise TourError("the deployment has no decoder")
    return names[0]


# --- the steps ------------------------------------------------------------------------------
async def show_gpus(tour: Tour) -> None:
    app = tour.app
    await tour.until(lambda: app.session.document is not None and app.session.gpu_reading is not None,
                     "the profile and the first GPU reading", 60)
    profile = app.session.profile()
    if profile is None or getattr(profile, "engine", None) != "sim":
        raise TourError("the tour drives simulated engines only (pdtui --demo --tour)")
    screen = _cockpit(tour)
    if screen is not None:
        screen.query_one("#gpu-table").focus()


async def open_picker(tour: Tour) -> None:
    from textual.widgets import ListView

    from pdtui.ui.screens.editor import EditorScreen
    from pdtui.ui.screens.picker import GpuPickerScreen
    from pdtui.ui.widgets.diff_table import DiffTable

    app = tour.app
    app.action_show_editor()

    def listed() -> bool:  # composed, its instances listed
        screen = app.screen
        return isinstance(screen, EditorScreen) and any(len(v.children) > 1 for v in screen.query("#sections"))

    await tour.until(listed, "the editor's list of instances", 30)
    editor = app.screen
    assert isinstance(editor, EditorScreen)
    sections = editor.query_one("#sections", ListView)
    decoder = next((i for i, item in enumerate(sections.children) if (item.name or "").startswith("decoders:")), None)
    if decoder is None:
        raise TourError("the profile has no decoder to pick GPUs for")
    sections.index = decoder  # as the operator's arrow keys do: the form follows
    sections.focus()
    await tour.until(lambda: editor.selection[0] == "decoders", "the decoder's form", 30)
    await editor.run_action("pick_gpus")  # what ctrl+g runs
    def picker_shown() -> GpuPickerScreen | None:  # mounted with its rows: it can be closed cleanly
        screen = app.screen
        if isinstance(screen, GpuPickerScreen) and screen.is_mounted:
            if any(t.row_count for t in screen.query("#picker-table").results(DiffTable)):
                return screen
        return None

    await tour.until(lambda: picker_shown() is not None, "the GPU picker's rows", 30)
    picker = picker_shown()
    if picker is not None:
        tour.opened(picker)


async def show_editor(tour: Tour) -> None:
    from pdtui.ui.screens.editor import EditorScreen

    tour.closed()  # the picker cancelled: the profile stays as it is on disk
    await tour.until(lambda: isinstance(tour.app.screen, EditorScreen), "the editor again", 30)


def _launch_failed(tour: Tour) -> str | None:
    from pdtui.ui.screens.dialogs import MessageScreen

    if isinstance(tour.app.screen, MessageScreen):
        return "the launch was refused or failed (see the message on screen)"
    status = _status(tour)
    if status is not None and status.phase == "failed":
        return "the launch failed: " + "; ".join(f"{i.name}: {i.reason}" for i in status.instances if i.reason)
    return None


async def launch(tour: Tour) -> None:
    from pdtui.ui.screens.dialogs import ChoiceScreen

    app = tour.app
    _cockpit(tour)
    status = _status(tour)
    if status is None or status.phase != "ready":
        app.post_message(LaunchRequested())
        await tour.ask_and_answer(lambda s: isinstance(s, ChoiceScreen), "yes", "the launch question")
        await tour.until(lambda: _status(tour) is not None and _status(tour).phase == "ready",
                         "the deployment ready", 180, failed=lambda: _launch_failed(tour))
    await tour.until(lambda: app.session.monitor is not None, "the deployment's monitor", 30)


async def cockpit(tour: Tour) -> None:
    from pdtui.ui.messages import BackgroundLoadToggle

    if not tour.app.session.background_load:
        tour.app.post_message(BackgroundLoadToggle())  # the story needs traffic
    _select_instance(tour, _first_decoder(tour))


def _transfers_seen(tour: Tour) -> bool:
    monitor = tour.app.session.monitor
    if monitor is None:
        return False
    return bool(monitor.kv_stats.rows()) and any(p.requests for p in monitor.pair_stats.pairs())


async def kv_transfer(tour: Tour) -> None:
    from pdtui.ui.observe import ObserveScreen

    app = tour.app
    app.post_message(ShowObserve("kv"))
    await tour.until(lambda: isinstance(app.screen, ObserveScreen) and _active_tab(app.screen) == "kv", "the KV view", 30)
    await tour.until(lambda: _transfers_seen(tour), "KV transfers through the proxy", 90)


def _active_tab(screen: Any) -> str:
    from textual.widgets import TabbedContent

    tabs = screen.query(TabbedContent)  # none while the screen is still being composed
    return str(tabs.first().active) if tabs else ""


async def inject_fault(tour: Tour) -> None:
    """SIGKILL to a simulated decoder's API server, as the kernel's OOM killer would send."""
    name = _first_decoder(tour)
    _select_instance(tour, name)
    status = _status(tour)
    inst = next(i for i in status.instances if i.name == name)
    if not tour.app.session.profile() or tour.app.session.profile().engine != "sim":
        raise TourError("no fault is injected into a real engine")
    if inst.pid is None or inst.state.value != "ready":
        raise TourError(f"{name} is not running ({inst.state.value}{': ' + inst.reason if inst.reason else ''})")
    fault = tour.fault
    fault.instance, fault.pid, fault.injected_at = name, inst.pid, time.time()
    try:
        os.kill(inst.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it died on its own meanwhile: the supervisor reports that the same way
    await tour.until(lambda: _state(tour, name) == "failed", f"the supervisor to see {name} die", 60)
    fault.crashed_seen = True


async def recover_fault(tour: Tour) -> None:
    """The operator's way: `r` on the failed decoder (RestartRequested), then yes."""
    from pdtui.ui.screens.dialogs import ChoiceScreen

    fault = tour.fault
    _select_instance(tour, fault.instance)
    tour.app.post_message(RestartRequested(fault.instance))
    await tour.ask_and_answer(lambda s: isinstance(s, ChoiceScreen), "yes", "the restart question")
    await _ready_again(tour)


async def _ready_again(tour: Tour) -> None:
    fault = tour.fault

    def decoder() -> Any:
        status = _status(tour)
        return next((i for i in status.instances if i.name == fault.instance), None) if status else None

    before = decoder()
    restarts = before.restarts if before is not None else 0
    crash = before.reason if before is not None else None  # kept until the new process starts

    def back() -> bool:
        inst = decoder()
        return inst is not None and inst.state.value == "ready" and inst.pid not in (None, fault.pid)

    def gave_up() -> str | None:  # the restart ran and ended failed: say why at once
        inst = decoder()
        if inst is not None and inst.restarts > restarts and inst.state.value == "failed" and inst.reason != crash:
            return f"the restart of {fault.instance} failed: {inst.reason}"
        return None

    await tour.until(back, f"{fault.instance} ready again", 120, failed=gave_up)
    fault.recovered = True


def recover(tour: Tour) -> None:
    """Takeover in the middle of the fault: restart the killed decoder now (no question),
    so that the operator is not left with a deployment the tour broke."""
    fault = tour.fault
    if fault.recovered or not fault.instance or not tour.app.control.active:
        return
    status = _status(tour)
    inst = next((i for i in status.instances if i.name == fault.instance), None) if status is not None else None
    if inst is None:
        return
    if inst.state.value in ("ready", "starting") and inst.pid not in (None, fault.pid):
        return  # a new process is already up or coming (the tour's own restart was answered)
    # Failed, or still "ready" with the killed pid (the supervisor has not looked yet).
    tour.app.commands.restart_now(fault.instance)
    tour.app.notify(f"restarting {fault.instance} (the tour's fault)", timeout=5)


async def playground(tour: Tour) -> None:
    from pdtui.loadgen.load import LoadSpec
    from pdtui.ui.observe import ObserveScreen

    app = tour.app
    app.post_message(ShowObserve("playground"))
    await tour.until(lambda: isinstance(app.screen, ObserveScreen) and _active_tab(app.screen) == "playground",
                     "the playground", 30)
    monitor = app.session.monitor
    running = monitor.jobs.get(LOAD_JOB) if monitor is not None else None
    if running is None or running.done:  # what its Run button posts
        app.screen.post_message(LoadRunRequested(LoadSpec(requests=24, concurrency=4, prompt_tokens=256, output_tokens=16)))
    def run_done() -> bool:
        job = monitor.jobs.get(LOAD_JOB) if monitor is not None else None
        return job is not None and job.done

    await tour.until(run_done, "the load run", 120)


async def the_end(tour: Tour) -> None:
    return None


# Captions fit one line of an 80-column terminal after "tour 10/10  " (tests/ui/test_tour.py).
TOUR_STEPS: tuple[TourStep, ...] = (
    TourStep("gpus", "Live GPUs (simulated): load, memory, whose process holds each.", show_gpus),
    TourStep("picker", "Pick an instance's GPUs here: each row says why one is busy.", open_picker),
    TourStep("editor", "The editor: fields checked as you type, the exact vllm argv.", show_editor),
    TourStep("launch", "Launch: proxy + 2 prefillers + 2 decoders, real processes.", launch),
    TourStep("cockpit", "The cockpit: state, req/s, KV GB/s and history per process.", cockpit),
    TourStep("kv", "KV transfer: per P → D pair (proxy), per engine (LMCache logs).", kv_transfer),
    TourStep("fault", "A fault: a decoder is killed (SIGKILL); the supervisor sees it.", inject_fault),
    TourStep("recovered", "Recovery: r restarts it; a new process, ready, takes traffic.", recover_fault),
    TourStep("playground", "Playground: a prompt or a load run through the proxy, p50/p99.", playground),
    TourStep("end", "End of the tour: the keys are yours (? help, q quit).", the_end),
)
