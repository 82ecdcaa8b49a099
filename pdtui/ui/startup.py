"""From mount to a complete first screen: the GPU rows first, then everything else.

The operator waits for the GPU rows, so the GPU feed starts at mount and its first reading
is painted before anything slow happens. Only then is the profile loaded (pydantic is slow
to import: even on a thread it would hold back the first paint), the start-up problems
shown, and a run re-attached or offered. A launch asked for while the profile still loads
is held and carried out once it is there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pdtui.ui import gc_pause, messages

if TYPE_CHECKING:
    from textual.app import App

    from pdtui.gpus.source import GpuSource
    from pdtui.ui.commands import DeploymentCommands
    from pdtui.ui.gpu_feed import GpuFeed
    from pdtui.ui.session import Session

__all__ = ["Startup"]


class Startup:
    def __init__(self, app: App, session: Session, commands: DeploymentCommands, *, demo: bool,
                 gpu_source: GpuSource | None, gpu_interval_s: float, problems: list[str],
                 start_feeds: bool = True, attach_run: Path | None = None, offer_reattach: bool = True) -> None:
        self.app = app
        self.session = session
        self.commands = commands
        self.demo = demo
        self.gpu_source = gpu_source
        self.gpu_interval_s = gpu_interval_s
        self.problems = problems  # shown once the profile is loaded (settings, keys, themes, profile)
        self.start_feeds = start_feeds
        self.attach_run = attach_run  # re-attach to this run at start, without asking
        self.offer_reattach = offer_reattach
        self.gpu_feed: GpuFeed | None = None
        self.first_screen_at: float | None = None
        self.profile_loading = False
        self._launch_after_load = False

    def mount(self, profile_path: Path | None) -> Path | None:
        """At the app's mount: the GPU feed's first poll now; the rest after the first paint.
        Returns the profile path (the demo's preset when none was given)."""
        if profile_path is None and self.demo and self.attach_run is None:  # a re-attached run names its own
            from pdtui.model.presets import resolve_profile_path  # standard library only

            profile_path = resolve_profile_path("demo")
        self.session.profile_path = profile_path  # the title names it from the first paint
        self.profile_loading = profile_path is not None
        if self.start_feeds:
            self._start_gpu_feed()
        self.app.call_after_refresh(lambda: self.app.run_worker(self._after_first_paint(profile_path), group="startup",
                                                                exit_on_error=False))
        return profile_path

    def holds(self, request: messages.DeploymentRequest) -> bool:
        """A launch while the profile still loads waits for it (the GPU rows come first)."""
        if isinstance(request, messages.LaunchRequested) and self.profile_loading:
            self._launch_after_load = True
            return True
        return False

    def _start_gpu_feed(self) -> None:
        from pdtui.ui import gpu_feed

        source = self.gpu_source or (gpu_feed.demo_source() if self.demo else gpu_feed.nvml_source())
        self.gpu_source = source
        self.gpu_feed = gpu_feed.GpuFeed(source, self.app.post_message, self.gpu_interval_s)
        self.gpu_feed.start()

    async def _after_first_paint(self, profile_path: Path | None) -> None:
        self.first_screen_at = time.monotonic()
        try:
            if self.start_feeds:
                await self._first_gpu_rows_painted()
                if self.gpu_feed is not None:
                    self.gpu_feed.poll_now()  # its first reading had no processes: who holds each GPU, now
        finally:
            gc_pause.resume()  # paused by `pdtui` before Textual was imported
        try:
            if profile_path is not None:
                self.problems += await asyncio.to_thread(self.session.open_profile, profile_path)
        finally:
            self.profile_loading = False
        if profile_path is not None and self.app.screen_stack:
            self.app.screen.post_message(messages.ProfileChanged())  # an editor opened meanwhile shows it
        if self._launch_after_load:
            self.commands.launch()
        self.commands.changed()
        for problem in self.problems:
            self.app.notify(problem, severity="warning", timeout=10)
        if not self.start_feeds:
            return
        if self.attach_run is not None:
            self.commands.attach(self.attach_run)
        elif self.offer_reattach:
            self.app.run_worker(self.commands.look_for_detached_runs, thread=True, group="reattach", exit_on_error=False)

    async def _first_gpu_rows_painted(self, timeout_s: float = 2.0) -> None:
        """Until the first GPU reading has been on screen (bounded: a slow driver must not
        hold back the profile)."""
        deadline = time.monotonic() + timeout_s
        while self.session.gpu_reading is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        painted = asyncio.Event()
        self.app.call_after_refresh(painted.set)
        try:
            await asyncio.wait_for(painted.wait(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
