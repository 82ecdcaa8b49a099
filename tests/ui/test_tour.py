"""`pdtui --demo --tour`: the whole tour on real simulated engines (launch, KV transfer, a
SIGKILL and the supervisor's restart, a load run), and a key mid-tour taking over."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from pdtui.ui.tour_steps import TOUR_STEPS
from tests.ui.test_app import wait_for


def _gone(pids: set[int]) -> set[int]:
    """The pids still alive (zombies count as gone: nobody runs in them)."""
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _left_behind(pids: set[int], timeout_s: float = 30.0) -> list[str]:
    """What still runs of `pids` once the processes had `timeout_s` to finish exiting."""
    import time

    deadline = time.monotonic() + timeout_s
    while _gone(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = []
    for pid in _gone(pids):
        try:
            left.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
        except psutil.NoSuchProcess:
            pass
    return left


def _pids(app) -> set[int]:
    status = app.control.status()
    return {i.pid for i in status.instances if i.pid} if status is not None else set()


def _children_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.timeout(420)
async def test_the_whole_tour_runs_on_real_engines_and_recovers_its_fault(free_demo_profile):
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.tour import Tour, TourCaption

    before = _children_pids()
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    tour = Tour(app, pace_s=0.0)
    seen_pids: set[int] = set()
    seen_captions: set[str] = set()
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            def progress() -> bool:
                seen_pids.update(_pids(app))
                seen_captions.update(str(c.text) for c in app.screen.query(TourCaption))
                return not tour.running and tour.outcome is not None

            await wait_for(pilot, progress, 360, f"the tour to end (at {tour.reached[-1:]}, {tour.outcome})")
            assert tour.outcome == "finished", tour.outcome
            assert tour.reached == [s.name for s in TOUR_STEPS]
            screens = tour.screens
            assert screens["picker"] == "GpuPickerScreen"
            assert screens["editor"] == "EditorScreen"
            assert screens["gpus"] == screens["cockpit"] == screens["recovered"] == "CockpitScreen"
            assert screens["kv"] == "ObserveScreen"
            assert screens["playground"] == "ObserveScreen"
            # Each step's caption was on screen (caught by the poll, or recorded as mounted).
            for step in TOUR_STEPS:
                assert any(name == step.name and step.caption in text for name, text in tour.captions)
            assert seen_captions, "no caption was ever seen on screen"
            # The fault was real and recovered: a new decoder process, ready, one restart.
            fault = tour.fault
            assert fault.crashed_seen and fault.recovered
            assert not psutil.pid_exists(fault.pid) or _gone({fault.pid}) == set()
            decoder = app.control.supervisor.instance(fault.instance)
            assert decoder.pid != fault.pid and decoder.restarts >= 1, decoder
            assert decoder.state.value == "ready", decoder  # (its reason says why not)
            # The profile was never changed (the picker was cancelled), the caption is gone.
            assert not app.document.dirty
            await wait_for(pilot, lambda: not app.screen.query(TourCaption), 10, "the caption to go")
            # The load run of the playground went through the proxy.
            from pdtui.ui.session import LOAD_JOB

            job = app.session.monitor.jobs.get(LOAD_JOB)
            assert job is not None and job.done and job.completed > 0
        finally:
            if app.control.active:
                await asyncio.to_thread(lambda: app.control.supervisor.stop().result(timeout=60))
    seen_pids.update(_children_pids() - before)
    assert _left_behind(seen_pids) == [], "processes left behind after the tour"


@pytest.mark.timeout(300)
async def test_a_key_mid_tour_takes_over_and_leaves_nothing_behind(free_demo_profile):
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.screens.dialogs import ChoiceScreen
    from pdtui.ui.tour import Tour, TourCaption

    from pdtui.ui.messages import RestartRequested
    from pdtui.ui.tour_steps import TourStep

    held = asyncio.Event()

    async def ask_then_hold(tour) -> None:
        """The tour's own steps up to the fault, then the restart question left open: the
        moment a takeover must close what the tour opened and undo what it broke."""
        tour.app.post_message(RestartRequested(tour.fault.instance))
        await tour.until(lambda: isinstance(tour.app.screen, ChoiceScreen), "the restart question", 30)
        tour.opened(tour.app.screen)
        held.set()
        await asyncio.Event().wait()  # until the key

    steps = [*TOUR_STEPS[:[s.name for s in TOUR_STEPS].index("fault") + 1], TourStep("hold", "held", ask_then_hold)]
    before = _children_pids()
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    tour = Tour(app, pace_s=0.0, steps=steps)
    seen_pids: set[int] = set()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: held.is_set() or not tour.running, 300, f"the tour's fault ({tour.outcome})")
        assert held.is_set(), tour.outcome
        assert tour.fault.crashed_seen and not tour.fault.recovered
        seen_pids.update(_pids(app) | {tour.fault.pid})
        await pilot.press("x")  # any key
        assert not tour.running and tour.outcome == "taken over"
        await wait_for(pilot, lambda: not app.screen.query(TourCaption), 10, "the caption to go")
        assert not isinstance(app.screen, ChoiceScreen)  # a question the tour raised is gone
        # The fault the tour injected does not outlive it: the decoder comes back.
        name = tour.fault.instance
        await wait_for(pilot, lambda: app.control.supervisor.instance(name).state.value == "ready"
                       and app.control.supervisor.instance(name).pid != tour.fault.pid, 120, f"{name} ready again")
        seen_pids.update(_pids(app))
        reached = len(tour.reached)
        # The app is the operator's: keys act again (help opens and closes), the tour stays stopped.
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", 10, "help")
        await pilot.press("escape")
        await pilot.pause(0.5)
        assert len(tour.reached) == reached and not tour.running
        # Quit → Stop: every process goes.
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the quit question")
        await pilot.click("#stop")
        await wait_for(pilot, lambda: not app.is_running or not app.control.active, 60, "the app to stop the deployment")
    seen_pids.update(_children_pids() - before)
    assert _left_behind(seen_pids) == [], "processes left behind after quitting mid-tour"


@pytest.mark.timeout(120)
async def test_a_click_while_the_tour_shows_the_gpu_picker_closes_it_unchanged(free_demo_profile):
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.screens.editor import EditorScreen
    from pdtui.ui.screens.picker import GpuPickerScreen
    from pdtui.ui.tour import Tour
    from pdtui.ui.tour_steps import TourStep

    async def hold(_tour) -> None:
        await asyncio.Event().wait()

    steps = [*TOUR_STEPS[:2], TourStep("hold", "held", hold)]
    app = PdtuiApp(free_demo_profile, demo=True, offer_reattach=False, keymap={})
    tour = Tour(app, pace_s=0.0, steps=steps)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: tour.reached[-1:] == ["hold"] or not tour.running, 60, "the picker shown")
        assert isinstance(app.screen, GpuPickerScreen)
        # A click takes over too. As the terminal driver sends it: to the app (Pilot.click
        # would hand it to the screen, past the app's hook).
        from textual import events
        from textual.pilot import _get_mouse_message_arguments

        app.post_message(events.MouseDown(**_get_mouse_message_arguments(app.screen, (2, 2), button=1)))
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen), 10, "the picker closed")
        assert tour.outcome == "taken over" and not app.document.dirty
        assert not app.control.active  # nothing was launched
        await pilot.press("escape")  # the editor is the operator's: esc goes back to the cockpit
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CockpitScreen", 10, "the cockpit")


@pytest.mark.timeout(120)
async def test_the_tour_refuses_a_real_engine(tmp_path):
    """The tour kills a process: never one of a real vLLM deployment."""
    from pdtui.model.presets import resolve_profile_path
    from pdtui.ui.app import PdtuiApp
    from pdtui.ui.tour import Tour

    real = tmp_path / "real.yaml"
    real.write_text(resolve_profile_path("1p1d").read_text())
    app = PdtuiApp(real, demo=True, offer_reattach=False, keymap={})
    tour = Tour(app, pace_s=0.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: not tour.running and tour.outcome is not None, 60, "the tour to stop")
        assert "simulated engines only" in tour.outcome
        assert not app.control.active  # nothing was launched


def test_every_caption_fits_one_line_at_80_columns():
    from rich.cells import cell_len

    for step in TOUR_STEPS:
        line = f"tour {len(TOUR_STEPS)}/{len(TOUR_STEPS)}  {step.caption}"
        assert cell_len(line) <= 80 - 2, line  # the caption's padding: one column each side


def test_tour_pace_flag_environment_and_bad_values(monkeypatch):
    from pdtui.cli import build_parser
    from pdtui.ui.cli import DEFAULT_TOUR_PACE_S, tour_pace

    monkeypatch.delenv("PDTUI_TOUR_PACE", raising=False)
    assert tour_pace(None) == (DEFAULT_TOUR_PACE_S, None)
    assert tour_pace(0.5) == (0.5, None)
    monkeypatch.setenv("PDTUI_TOUR_PACE", "1.5")
    assert tour_pace(None) == (1.5, None)
    monkeypatch.setenv("PDTUI_TOUR_PACE", "soon")
    pace, problem = tour_pace(None)
    assert pace == DEFAULT_TOUR_PACE_S and "PDTUI_TOUR_PACE" in problem and "'soon'" in problem
    args = build_parser().parse_args(["--demo", "--tour", "--tour-pace", "0"])
    assert args.tour and args.tour_pace == 0.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--tour-pace", "-2"])
