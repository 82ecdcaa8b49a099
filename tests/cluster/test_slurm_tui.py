"""The TUI on a real Slurm: attach to a run `pdtui up` started, launch a cluster profile
from the cockpit, the per-node GPU rows, stop from the TUI, and `pdtui down --all`.

Simulated engines as job steps of the one-node test cluster (tests/cluster/conftest.py);
skipped, with the reason in the summary, where Slurm cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from pdtui.cluster.cli import cancel_all
from pdtui.ui.app import PdtuiApp
from pdtui.ui.observe import ObserveScreen
from pdtui.ui.observe.logpane import LogPane
from pdtui.ui.cli import attach_target
from pdtui.ui.control import detached_runs
from pdtui.ui.screens.dialogs import ChoiceScreen
from tests.cluster.test_slurm_up import NODE, _completion, _pdtui, _processes_of, _profile, _squeue, _wait_for
from tests.conftest import REPO_ROOT
from tests.ui.test_app import table_text, wait_for

pytestmark = pytest.mark.timeout(600)
SIZE = (160, 48)


@pytest.fixture
def env(slurm_cluster, tmp_path, monkeypatch):
    """One environment for the app in this process and the `pdtui` commands it runs:
    the job's steps inherit it from sbatch (PYTHONPATH: this checkout's pdtui)."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("PDTUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    return dict(os.environ)


def _run_dir(tmp_path: Path, run_name: str) -> Path:
    return tmp_path / "state" / "pdtui" / "runs" / run_name


def _state(app, name: str) -> str:
    return str(app.control.status().instance(name).state)


async def _act_on(pilot, app, name: str, key: str, confirm: bool = True) -> None:
    """Select the instance's row in the cockpit, press the key, confirm."""
    table = app.screen.query_one("#instance-table")
    table.focus()
    table.move_cursor(row=table.get_row_index(name))
    await pilot.pause()
    await pilot.press(key)
    if confirm:
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, f"the question for {key}")
        await pilot.press("enter")


def _screen_text(app) -> str:
    from textual.widgets import Static

    return "\n".join(str(w.render()) for w in app.screen.query(Static))


def _gpu_rows(app) -> list[str]:
    return [line for line in table_text(app, "#gpu-table").splitlines() if line.strip()]


async def test_attach_to_a_slurm_run_shows_instances_telemetry_and_gpus_per_node(env, tmp_path):
    up = _pdtui(env, "up", str(_profile(tmp_path)), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = _run_dir(tmp_path, run_name)
    job_id = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    try:
        assert attach_target(run_name) == (run_dir, None)
        assert any(r.path == run_dir for r in detached_runs())  # `pdtui` alone offers to re-attach
        app = PdtuiApp(None, demo=True, attach_run=run_dir, offer_reattach=False, keymap={})
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.control.status() is not None, 60, "the re-attach")
            # State from Slurm + /health: the proxy step and both engines ready.
            await wait_for(pilot, lambda: table_text(app, "#instance-table").count("ready") == 3, 60, "3 ready rows")
            status = app.control.status()
            assert {i.name for i in status.instances} == {"proxy", "prefiller1", "decoder1"}
            assert all(i.where and i.where.startswith(f"on {NODE}, step {job_id}.") for i in status.instances), status
            # The details screen says where it runs.
            await _act_on(pilot, app, "decoder1", "enter", confirm=False)
            await wait_for(pilot, lambda: f"runs      on {NODE}, step {job_id}." in _screen_text(app), 30, "decoder1's details")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen.query("#instance-table"), 10, "the cockpit again")
            # The same telemetry: the monitor scrapes each engine's /metrics over the network
            # (the address Slurm's node has) and tails the logs in the run directory.
            await wait_for(pilot, lambda: app.session.monitor is not None and app.session.monitor.latest_scrape("decoder1") is not None,
                           60, "a scrape of decoder1's /metrics")
            monitor = app.session.monitor
            assert monitor.follower("decoder1").path == str(run_dir / "decoder1.log")
            # The GPU view per node: `pdtui gpus --json` as a step on the node, grouped under it,
            # with the instances Slurm bound to each GPU.
            await wait_for(pilot, lambda: any(f"node {NODE}" in r for r in _gpu_rows(app)), 120, "the node's GPU rows")
            await wait_for(pilot, lambda: "prefiller1" in table_text(app, "#gpu-table") and "decoder1" in table_text(app, "#gpu-table"),
                           120, "the engines on the node's GPUs")
            await wait_for(pilot, lambda: f"8 GPUs on 1 node(s) · run {run_name}" in str(app.screen.query_one("#health").render()),
                           10, "the health line counting the node's GPUs")
            keys = [key.value for key in app.screen.query_one("#gpu-table").rows]
            assert keys == [f"node-{NODE}"] + [f"node-{NODE}-{i}" for i in range(8)], keys  # the node's 8, not this box's
            # One instance alone: restart decoder1 (a new step of the same job), stop
            # prefiller1 (its step cancelled, the job and the others run on), start it again.
            def step_of(name):
                return {n: i for i, n in (line.split() for line in _squeue(env, "-s", "-j", job_id, "-o", "%i %j").splitlines())}.get(name)

            first = step_of("decoder1")
            await _act_on(pilot, app, "decoder1", "r")
            await wait_for(pilot, lambda: step_of("decoder1") not in (None, first), 120, "a new step for decoder1")
            await wait_for(pilot, lambda: _state(app, "decoder1") == "ready", 180, "decoder1 ready again")
            await _act_on(pilot, app, "prefiller1", "s")
            await wait_for(pilot, lambda: _state(app, "prefiller1") == "stopped", 120, "prefiller1 stopped alone")
            assert step_of("prefiller1") is None and step_of("decoder1") and "RUNNING" in _squeue(env, "-j", job_id, "-o", "%T")
            await _act_on(pilot, app, "prefiller1", "S", confirm=False)
            await wait_for(pilot, lambda: _state(app, "prefiller1") == "ready" and step_of("prefiller1"), 180, "prefiller1 started again")
            # Quit -> Detach: the job keeps running.
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the quit question")
            await pilot.press("enter")  # Detach is the first choice
            await wait_for(pilot, lambda: app.commands.exit_note is not None, 60, "the detach")
        assert "RUNNING" in _squeue(env, "-j", job_id, "-o", "%T")
    finally:
        down = _pdtui(env, "down", run_name)
    assert down.returncode == 0, down.stderr
    assert not _squeue(env, "-s", "-j", job_id)
    assert _wait_for(lambda: not _processes_of(run_dir), 60)


async def test_a_node_failure_in_the_tui_is_a_failed_instance_with_slurms_reason(env, tmp_path):
    up = _pdtui(env, "up", str(_profile(tmp_path)), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = _run_dir(tmp_path, run_name)
    scontrol = ["scontrol", "update", f"nodename={NODE}"]
    try:
        app = PdtuiApp(None, demo=True, attach_run=run_dir, offer_reattach=False, keymap={}, background_load=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: table_text(app, "#instance-table").count("ready") == 3, 60, "3 ready rows")
            subprocess.run([*scontrol, "state=down", "reason=pdtui-test: power supply"], env=env, check=True, timeout=30)
            await wait_for(pilot, lambda: _state(app, "decoder1") == "failed", 90, "decoder1 failed")
            reason = app.control.status().instance("decoder1").reason
            assert "power supply" in reason and "NODE_FAIL" in reason, reason
            await wait_for(pilot, lambda: any("decoder1 failed" in n.message and "power supply" in n.message for n in app._notifications),
                           30, "the notice with Slurm's reason")
            await wait_for(pilot, lambda: "failed" in table_text(app, "#instance-table"), 10, "the failed row")
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen) or not app.is_running, 10, "the quit")
            if app.is_running and isinstance(app.screen, ChoiceScreen):
                await pilot.press("enter")  # detach: `pdtui down` below ends it
    finally:
        subprocess.run([*scontrol, "state=resume"], check=False, env=env, timeout=30)
        _pdtui(env, "down", run_name)
        assert _wait_for(lambda: not _processes_of(run_dir), 60)
        assert _wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%T"], check=False, env=env,
                                                            capture_output=True, text=True).stdout, 60)


async def test_launch_a_cluster_profile_from_the_tui_then_stop_it(env, tmp_path):
    profile = _profile(tmp_path)
    app = PdtuiApp(profile, demo=True, offer_reattach=False, keymap={}, background_load=False)
    run_dir = None
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(pilot, lambda: app.document is not None, 60, "the profile")
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the launch question")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.control.status() is not None, 60, "the submitted job")
            run_dir = Path(app.control.status().run_dir)
            job_id = json.loads((run_dir / "slurm.json").read_text())["job_id"]
            # Through the Slurm backend: every instance a step of the job, not a local process.
            await wait_for(pilot, lambda: {"proxy", "prefiller1", "decoder1"} <= set(_squeue(env, "-s", "-j", job_id, "-o", "%j").split()),
                           180, "the job steps in squeue")
            await wait_for(pilot, lambda: app.control.status().phase == "ready", 180, "ready")
            await wait_for(pilot, lambda: table_text(app, "#instance-table").count("ready") == 3, 10, "3 ready rows")
            # The same telemetry: a completion through the proxy on the node is seen as a KV
            # transfer (the logs on the shared filesystem) and in the observe screen's panes.
            proxy = app.control.status().instance("proxy").health_url.rsplit("/health", 1)[0]
            assert (await asyncio.to_thread(_completion, proxy))["choices"][0]["text"]
            await wait_for(pilot, lambda: app.session.monitor is not None and app.session.monitor.kv_stats.rows(), 60, "a KV transfer")
            await pilot.press("o")
            await wait_for(pilot, lambda: isinstance(app.screen, ObserveScreen), 10, "the observe screen")
            assert len(list(app.screen.query(LogPane))) == 3  # proxy + 2 engines
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ObserveScreen), 10, "the cockpit")
            # What runs is the saved profile placed by Slurm: no "running ≠ saved" note.
            await pilot.pause(1.2)
            assert "saved profile" not in str(app.screen.query_one("#title").render())
            # Every instance ends by itself (killed): each step waits in the allocation for a
            # restart, so the job still holds it and X still has something to stop.
            for proc in _processes_of(run_dir):
                with contextlib.suppress(psutil.Error):  # gone already (a child with its parent)
                    if any(part.startswith(("pdtui.sim", "pdtui.proxy")) for part in proc.cmdline()):  # engines with their EngineCores
                        proc.kill()
            await wait_for(pilot, lambda: {str(i.state) for i in app.control.status().instances} == {"failed"}, 120, "all failed")
            assert "RUNNING" in _squeue(env, "-j", job_id, "-o", "%T") and app.control.running()
            # Stop the deployment: the backend's down (scancel, then no step, no job).
            await pilot.press("X")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), 10, "the stop question")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.control.status().phase == "stopped", 120, "stopped")
            assert not _squeue(env, "-s", "-j", job_id)
            assert job_id not in _squeue(env, "-o", "%i").split() or "CANCELLED" in _squeue(env, "-j", job_id, "-o", "%T")
        finally:
            if app.control.active:
                await app.commands.close()
    assert run_dir is not None
    assert _wait_for(lambda: not _processes_of(run_dir), 60), [p.cmdline() for p in _processes_of(run_dir)]


def test_down_all_cancels_pdtuis_slurm_jobs(env, tmp_path):
    up = _pdtui(env, "up", str(_profile(tmp_path)), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_name = up.stdout.strip().splitlines()[-1]
    run_dir = _run_dir(tmp_path, run_name)
    job_id = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    # Headless too, one instance alone: a new step for it, ready again.
    restart = _pdtui(env, "restart", "decoder1", "--run", run_name)
    assert restart.returncode == 0 and f"decoder1: ready on {NODE} (step {job_id}." in restart.stderr, restart.stderr
    down = _pdtui(env, "down", "--all")
    assert down.returncode == 0, down.stderr
    assert f"{run_name}: cancelled Slurm job {job_id} (running), no step left" in down.stderr, down.stderr
    assert not _squeue(env, "-s", "-j", job_id)
    assert _wait_for(lambda: not _processes_of(run_dir), 60)
    # Its Slurm part again (in-process: `down --all` also sweeps every marked process of this
    # user, other tests' included): the run is cancelled, nothing is left to say about it.
    assert cancel_all() == (True, [])
    # A job of pdtui whose run directory lost its state is still found (by its name and
    # working directory) and cancelled.
    up = _pdtui(env, "up", str(_profile(tmp_path)), "--detach", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    run_dir = _run_dir(tmp_path, up.stdout.strip().splitlines()[-1])
    job_id = json.loads((run_dir / "slurm.json").read_text())["job_id"]
    (run_dir / "slurm.json").unlink()
    ok, lines = cancel_all()
    assert ok and len(lines) == 1 and f"cancelled Slurm job {job_id}" in lines[0] and "run state (slurm.json) is gone" in lines[0], lines
    assert _wait_for(lambda: not _squeue(env, "-s", "-j", job_id), 60)
    assert _wait_for(lambda: not _processes_of(run_dir), 60)
