"""What the app does when a screen asks: launch, stop, restart, attach, quit, load.

`DeploymentCommands(app, session)` turns the request messages of pdtui.ui.messages into
supervisor calls (through `DeploymentControl`, off the event loop) and owns the
deployment's `DeploymentMonitor`: created and started when a deployment is launched or
attached, stopped when the next one replaces it or the app quits. Every workflow runs as
a worker of the app with `exit_on_error=False`; a failure is reported once, by the app's
`on_worker_state_changed`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdtui.ui import messages
from pdtui.ui.session import BACKGROUND_JOB, Session
from pdtui.text import plural

if TYPE_CHECKING:
    from textual.app import App

__all__ = ["DeploymentCommands", "pair_of"]


def pair_of(status: Any, name: str) -> tuple[str, str] | None:
    """The P/D pair of the same rank as `name` (prefiller i with decoder i)."""
    prefillers = [i.name for i in status.instances if i.kind == "prefiller"]
    decoders = [i.name for i in status.instances if i.kind == "decoder"]
    if name in prefillers and decoders:
        return name, decoders[min(prefillers.index(name), len(decoders) - 1)]
    if name in decoders and prefillers:
        return prefillers[min(decoders.index(name), len(prefillers) - 1)], name
    return None


class DeploymentCommands:
    def __init__(self, app: App, session: Session) -> None:
        self.app = app
        self.session = session
        self.control = session.control
        self.quitting = False
        self.exit_note: str | None = None  # what `pdtui` prints after the TUI closed

    def _work(self, coro, group: str, exclusive: bool = False) -> None:
        self.app.run_worker(coro, group=group, exclusive=exclusive, exit_on_error=False)

    def changed(self) -> None:
        """Tell the active screen (it reads the session) and keep the monitor in step."""
        if self.app.screen_stack:
            self.app.screen.post_message(messages.DeploymentChanged())
        if self.session.monitor_outdated() and not self.quitting:  # a Slurm run's addresses came with its allocation
            # The function, not a coroutine: nothing is left un-awaited when the app is closing.
            work: Any = self._new_monitor
            self.app.run_worker(work, group="monitor", exclusive=True, exit_on_error=False)
        self._background_load()

    def carry_out(self, request: messages.DeploymentRequest) -> None:
        """A screen's request (pdtui.ui.messages), whichever screen posted it."""
        match request:
            case messages.LaunchRequested():
                self.launch()
            case messages.StopRequested():
                self.stop()
            case messages.StopInstanceRequested():
                self.stop_instance(request.name)
            case messages.StartInstanceRequested():
                self.start_instance(request.name)
            case messages.StopOrphansRequested():
                self.stop_orphans()
            case messages.RestartRequested():
                self.restart(request.name)
            case messages.RestartPairRequested():
                self.restart_pair(request.name)
            case messages.BackgroundLoadToggle():
                self.toggle_background_load()

    def supervisor_event(self, event: Any, gpu_feed: Any) -> None:
        """A runtime event: a notice for the operator, the GPU feed told whose pids are ours."""
        from pdtui.deploy.events import NodeGpusRead
        from pdtui.runtime import DeploymentEvent

        if isinstance(event, NodeGpusRead):  # a cluster run's GPUs, per node
            self.session.set_node_gpus(event)
            if self.app.screen_stack:
                self.app.screen.post_message(messages.GpuReadingChanged())
            return
        if isinstance(event, DeploymentEvent) and event.kind != "ready":  # the launch says "ready" once
            failed = event.kind in ("failed", "instance_crashed", "preflight_failed")
            self.app.notify(event.message, severity="error" if failed else "information", timeout=8)
        self._tell_gpu_feed(gpu_feed)
        self.changed()

    def _tell_gpu_feed(self, gpu_feed: Any) -> None:
        """Whose pids are ours, and (simulated GPUs) where this run's engines report."""
        if gpu_feed is not None:
            gpu_feed.own_pids = self.control.own_pids()
            set_dir = getattr(gpu_feed.source, "set_sim_gpu_dir", None)
            if set_dir is not None and self.control.active:
                set_dir(self.control.sim_gpu_dir())

    def look_for_detached_runs(self) -> None:
        """On a thread at start: offer to re-attach to a run an earlier pdtui left running."""
        from pdtui.ui.control import detached_runs

        runs = detached_runs()
        if runs:
            self.app.call_from_thread(self._offer_attach, runs[0])

    def _offer_attach(self, run: Any) -> None:
        from pdtui.ui.screens.dialogs import ChoiceScreen

        if self.control.active:
            return
        text = f"A deployment is still running from an earlier session:\n{run.name} (profile {run.profile})\n{run.path}"
        self.app.push_screen(ChoiceScreen(text, [("attach", "Re-attach"), ("cancel", "Not now")], title="Detached run"),
                             lambda answer: self.attach(run.path) if answer == "attach" else None)

    # --- the monitor ------------------------------------------------------------------
    async def _new_monitor(self) -> None:
        await self._stop_monitor()
        monitor = self.session.new_monitor()
        if monitor is not None:
            await asyncio.to_thread(monitor.start)
        self.session.monitor = monitor

    async def _stop_monitor(self) -> None:
        monitor, self.session.monitor = self.session.monitor, None
        if monitor is not None:
            await asyncio.to_thread(monitor.stop)

    def _background_load(self) -> None:
        """The demo's gentle load runs while the deployment is ready and the toggle is on."""
        monitor, status = self.session.monitor, self.session.status()
        if monitor is None or not monitor.running or monitor.proxy_url is None:
            return
        job = monitor.jobs.get(BACKGROUND_JOB)
        running = job is not None and not job.done
        wanted = self.session.background_load and status is not None and status.phase == "ready"
        if wanted and not running:
            from pdtui.loadgen.gentle import gentle_load

            url = monitor.proxy_url
            monitor.jobs.start(BACKGROUND_JOB, lambda job: gentle_load(url, job), detail="demo load")
        elif not self.session.background_load and running and job is not None:
            job.cancel()

    def toggle_background_load(self) -> None:
        self.session.background_load = not self.session.background_load
        self._background_load()
        self.app.notify(f"demo load {'on' if self.session.background_load else 'off'}", timeout=2)
        self.changed()

    # --- launch / attach ----------------------------------------------------------------
    def launch(self) -> None:
        from pdtui.ui.screens.dialogs import MessageScreen

        doc = self.session.document
        if self.control.running():
            self.app.notify("a deployment is already running (X stops it all)", severity="warning")
            return
        if doc is None:
            self.app.notify("no profile loaded: open one in the editor (e, then ctrl+o)", severity="error")
            return
        validation = doc.revalidate()
        if not validation.ok:
            self.app.push_screen(MessageScreen("Launch blocked: the profile has errors",
                                               [p.format(doc.path.name) for p in validation.errors]))
            return
        from pdtui.ui.screens.dialogs import confirm

        profile = validation.profile

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._work(self._launch(profile), "control", exclusive=True)

        count = len(profile.prefillers) + len(profile.decoders) + 1
        where = f" as steps of one {profile.cluster.type.capitalize()} job" if profile.cluster is not None else ""
        self.app.push_screen(confirm(f"Launch {doc.path.name}: {count} processes (proxy, "
                                     f"{len(profile.prefillers)} P, {len(profile.decoders)} D){where}?",
                                     "Launch", "Launch deployment"), chosen)

    async def _launch(self, profile: Any) -> None:
        from pdtui.model.hostchecks import check_host
        from pdtui.ui.screens.dialogs import MessageScreen

        reading = self.session.gpu_reading
        gpu_error = reading.inventory.error if reading is not None else None
        gpu_count = None if reading is None or gpu_error else len(reading.inventory.gpus)
        problems = await asyncio.to_thread(check_host, profile, gpu_count, gpu_error=gpu_error)
        errors = [p for p in problems if p.is_error]
        if errors:
            name = self.session.document.path.name if self.session.document else ""
            self.app.push_screen(MessageScreen("Launch blocked on this machine", [p.format(name) for p in errors]))
            return
        if self.control.active:
            await self._stop_monitor()
            await asyncio.to_thread(self.control.close_blocking)
        self.session.set_node_gpus(None)
        try:
            await asyncio.to_thread(self.control.launch_blocking, profile)
        except Exception as exc:
            self.app.push_screen(MessageScreen("Launch failed", [f"{type(exc).__name__}: {exc}"]))
            return
        await self._new_monitor()
        self.changed()
        self.app.notify(f"launching {profile.name}…", timeout=3)
        try:
            ok = await self.control.start()
        finally:
            self.changed()
        if ok:
            self.app.notify(f"{profile.name} ready", timeout=3)  # one short toast: the table says the rest
        else:
            status = self.control.status()
            reasons = [f"{i.name}: {i.reason}" for i in status.instances if i.reason] if status else []
            self.app.notify("launch failed: " + ("; ".join(reasons) or "see the instance details"), severity="error", timeout=15)

    def attach(self, run_dir: Path) -> None:
        self._work(self._attach(run_dir), "control", exclusive=True)

    async def _attach(self, run_dir: Path) -> None:
        try:
            await asyncio.to_thread(self.control.attach_blocking, run_dir)
        except Exception as exc:
            self.app.notify(f"cannot re-attach to {run_dir}: {exc}", severity="error", timeout=10)
            return
        self.session.set_node_gpus(None)
        self._tell_gpu_feed(getattr(self.app, "gpu_feed", None))
        await self._new_monitor()
        self.changed()
        self.app.notify(f"re-attached to {run_dir.name}")

    # --- stop / restart -----------------------------------------------------------------
    def stop(self) -> None:
        from pdtui.ui.screens.dialogs import confirm

        status = self.control.status()
        if status is None or not self.control.running():
            self.app.notify("nothing is running", severity="warning")
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._work(self._stop(), "control", exclusive=True)

        self.app.push_screen(confirm(f"Stop every process of {status.run_name}?", "Stop", "Stop deployment"), chosen)

    async def _stop(self) -> None:
        if self.session.monitor is not None:
            self.session.monitor.jobs.cancel_all()  # no load into a deployment going down
        try:
            await self.control.stop()
        finally:
            self.changed()
        self.app.notify("deployment stopped", timeout=3)

    def _instance(self, name: str | None) -> Any:
        status = self.control.status()
        if status is None or not name:
            return None
        return next((i for i in status.instances if i.name == name), None)

    def stop_instance(self, name: str | None) -> None:
        """The selected instance only; the rest of the deployment keeps running."""
        from pdtui.ui.screens.dialogs import confirm

        if self._no_instance_actions():
            return
        inst = self._instance(name)
        if inst is None or not inst.is_running:
            self.app.notify("select a running instance to stop (X stops the whole deployment)", severity="warning")
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._work(self._stop_instance(inst.name), "restart")

        self.app.push_screen(confirm(f"Stop {inst.name}? Requests it is serving will fail; S starts it again.",
                                     "Stop", "Stop instance"), chosen)

    async def _stop_instance(self, name: str) -> None:
        try:
            await self.control.stop_instance(name)
        finally:
            self.changed()
        self.app.notify(f"{name} stopped (S starts it)", timeout=3)

    def stop_orphans(self) -> None:
        """Find the orphans off the event loop (a /proc scan), then ask, then stop them."""
        self._work(self._offer_stop_orphans(), "orphans", exclusive=True)

    async def _offer_stop_orphans(self) -> None:
        import asyncio

        from pdtui.runtime.orphans import find_orphans
        from pdtui.ui.screens.dialogs import confirm

        sim_dir = self.session.sim_gpu_dir()
        orphans = await asyncio.to_thread(find_orphans, (str(sim_dir),) if sim_dir else ())
        if not orphans:
            self.app.notify("no orphan GPU process: every process with a pdtui run marker belongs to a live instance", timeout=4)
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._work(self._stop_orphans(orphans), "orphans", exclusive=True)

        listing = "\n".join(f"  {o.describe()}" for o in orphans)
        self.app.push_screen(confirm(f"Stop {plural(len(orphans), 'orphan process', 'orphan processes')}?\n{listing}", "Stop", "Orphan GPU processes"), chosen)

    async def _stop_orphans(self, orphans: list[Any]) -> None:
        import asyncio

        from pdtui.runtime.orphans import stop_orphans

        lines = await asyncio.to_thread(stop_orphans, orphans)
        self.app.notify("\n".join(lines) or "nothing was left to stop", timeout=8)

    def _no_instance_actions(self) -> bool:
        """The deployment cannot stop/restart one instance alone (a Slurm job): say so."""
        note = self.control.instance_actions_note()
        if note:
            self.app.notify(note, severity="warning", timeout=8)
        return bool(note)

    def start_instance(self, name: str | None) -> None:
        if self._no_instance_actions():
            return
        inst = self._instance(name)
        if inst is None:
            self.app.notify("select an instance of a launched deployment to start (u launches it all)", severity="warning")
            return
        if inst.is_running:
            self.app.notify(f"{inst.name} is already running (r restarts it)", severity="warning")
            return
        self.app.notify(f"starting {inst.name}…", timeout=3)
        self.restart_now(inst.name)  # a restart of a stopped instance starts it

    def restart(self, name: str | None) -> None:
        from pdtui.ui.screens.dialogs import confirm

        from pdtui.ui.drift import offer_restart

        if not self.control.active or not name:
            self.app.notify("select a running instance to restart", severity="warning")
            return
        if self._no_instance_actions():
            return
        if offer_restart(self.app, name):  # it runs with other settings than the saved profile's
            return

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self.restart_now(name)

        self.app.push_screen(confirm(f"Restart {name}? Requests it is serving will fail.", "Restart", "Restart"), chosen)

    def restart_now(self, name: str) -> None:
        self._work(self._restart(name), "restart")

    async def _restart(self, name: str) -> None:
        try:
            ok = await self.control.restart(name)
        finally:
            self.changed()
        self.app.notify(f"{name} {'ready again' if ok else 'did not come back'}", severity="information" if ok else "error")

    def restart_pair(self, name: str | None) -> None:
        """A stuck KV transfer usually needs both ends restarted."""
        from pdtui.ui.screens.dialogs import confirm

        if self._no_instance_actions():
            return
        status = self.control.status()
        pair = pair_of(status, name) if status is not None and name else None
        if pair is None:
            self.app.notify("select a running prefiller or decoder to restart its P/D pair", severity="warning")
            return
        p, d = pair

        def chosen(answer: str | None) -> None:
            if answer == "yes":
                self._work(self._restart_pair(p, d), "restart")

        self.app.push_screen(confirm(f"Restart the pair {p} + {d}?", "Restart", "Restart P/D pair"), chosen)

    async def _restart_pair(self, prefiller: str, decoder: str) -> None:
        ok = await self.control.restart_pair(prefiller, decoder)
        self.app.notify(f"{prefiller} + {decoder} {'ready again' if ok else 'did not come back'}")

    # --- quit ---------------------------------------------------------------------------
    def quit(self) -> None:
        from pdtui.ui.screens.dialogs import ChoiceScreen, confirm

        if self.quitting:
            return
        doc = self.session.document
        if doc is not None and doc.dirty and not self.control.running():
            def chosen_unsaved(answer: str | None) -> None:
                if answer == "yes":
                    self.finish()

            self.app.push_screen(confirm(f"{doc.path.name} has unsaved changes. Quit anyway?", "Quit", "Unsaved changes"), chosen_unsaved)
            return
        if not self.control.running():
            self.finish()
            return

        def chosen(answer: str | None) -> None:
            if answer in ("stop", "detach"):
                self.finish(answer)

        self.app.push_screen(ChoiceScreen(
            "The deployment is still running. Stop it, or leave it running (detach) and re-attach later?",
            [("detach", "Detach"), ("stop", "Stop"), ("cancel", "Cancel")], title="Quit"), chosen)

    def finish(self, how: str = "stop") -> None:
        self._work(self._finish(how), "quit")

    async def _finish(self, how: str) -> None:
        self.quitting = True
        try:
            await self._stop_monitor()
            if self.control.active:
                if how == "detach":
                    from pdtui.constants import reattach_command

                    run_name = self.control.status().run_name
                    self.control.detach()
                    # Printed by `pdtui` once the terminal is back (pdtui.ui.cli.run_tui).
                    self.exit_note = (f"pdtui: detached; {run_name} keeps running.\n"
                                      f"  re-attach: {reattach_command(run_name)}\n  stop:      pdtui down {run_name}")
                else:
                    await self.control.stop()
                await asyncio.to_thread(self.control.close_blocking)
        except Exception:
            self.quitting = False
            raise
        self.app.exit()

    async def close(self) -> None:
        """On unmount: the monitor's thread and the supervisor's, whatever happened."""
        await self._stop_monitor()
        if self.control.active:
            await asyncio.to_thread(self.control.close_blocking)
