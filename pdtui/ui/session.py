"""`Session`: what the screens read, handed down to them (attributes down).

One per app. It holds the deployment control (the supervisor seen through messages),
the deployment's `DeploymentMonitor` while there is one, the history store every series
goes to (the monitor's engine and KV series, and the GPU history recorded here from the
GPU feed), the latest GPU reading and the profile document. Screens take it in their
constructor and never reach into the app; what changes is announced to them with
`DeploymentChanged` / `GpuReadingChanged` (pdtui.ui.messages).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pdtui.telemetry.series import HOUR_AT_1S, SeriesStore
from pdtui.ui.control import DeploymentControl

if TYPE_CHECKING:
    from textual.app import App

    from pdtui.telemetry.monitor import DeploymentMonitor

    from pdtui.ui.gpu_feed import GpuReading

__all__ = ["BACKGROUND_JOB", "LOAD_JOB", "Session", "session_of"]

LOAD_JOB = "load"  # the playground's load run
BACKGROUND_JOB = "background"  # the demo's gentle load


class Session:
    def __init__(self, control: DeploymentControl, *, demo: bool = False, history_points: int = HOUR_AT_1S) -> None:
        self.control = control
        self.demo = demo
        self.store = SeriesStore(history_points)
        self.monitor: DeploymentMonitor | None = None
        self.gpu_reading: GpuReading | None = None
        # A cluster run's GPUs per node (pdtui.deploy.deployment.NodeGpusRead; None: this machine's)
        self.node_gpus: Any = None
        self._monitor_key: tuple = ()  # the endpoints the monitor was built for
        self.document: Any = None  # pdtui.model.document.ProfileDocument, loaded after the first paint
        self.profile_path: Path | None = None  # known before the document is loaded: the title names it at once
        self.background_load = demo  # the demo tells its story with traffic, unless turned off
        # Markup appended to the cockpit's title (the app sets it: the running deployment
        # against the saved profile, pdtui.ui.drift).
        self.title_note: Callable[[], str] = lambda: ""

    def status(self) -> Any:
        return self.control.status()

    def profile(self) -> Any:
        doc = self.document
        return doc.validation.profile if doc is not None and doc.validation.ok else None

    def open_profile(self, path: Path) -> list[str]:
        """Read and validate the profile (blocking: pydantic and the checks take a while,
        so it runs on a thread); the problems to show, if any."""
        from pdtui.model.document import ProfileDocument

        self.profile_path = path
        try:
            self.document = ProfileDocument.open(path)
        except OSError as exc:
            self.document = None
            self.profile_path = None  # the title says "no profile" again
            return [f"cannot open profile {path}: {exc.strerror or exc}"]
        return [self.document.load_error] if self.document.load_error else []

    def record_gpus(self, reading: GpuReading, now: float | None = None) -> None:
        """GPU history: utilisation (%) and memory used (%) per GPU, into the store."""
        t = time.time() if now is None else now
        for gpu in reading.inventory.gpus:
            util = gpu.utilization_gpu
            used, total = gpu.memory_used, gpu.memory_total
            util_v = float(util) if isinstance(util, (int, float)) else None
            mem_v = 100.0 * used / total if isinstance(used, (int, float)) and isinstance(total, (int, float)) and total else None
            self.store.record(f"gpu/{gpu.index}/util", t, util_v)
            self.store.record(f"gpu/{gpu.index}/mem", t, mem_v)

    def new_monitor(self) -> DeploymentMonitor | None:
        """A monitor for the current deployment (not started); None without one."""
        status = self.status()
        if status is None:
            return None
        ports: dict[str, list[int]] = {}
        profile = self.profile()
        if profile is not None:
            from pdtui.model.effective import internal_api_ports

            for spec in profile.instances():
                ports[spec.name] = internal_api_ports(profile, spec)
        host = getattr(profile, "host", None) or "127.0.0.1"
        from pdtui.telemetry.monitor import DeploymentMonitor  # aiohttp & co: not before the first paint

        self._monitor_key = _endpoints(status)
        return DeploymentMonitor.from_status(status, lmcache_ports=ports, host=host, store=self.store)

    def monitor_outdated(self) -> bool:
        """The deployment's endpoints changed since the monitor was built (a Slurm run
        learns its nodes' addresses once the job is placed)."""
        status = self.status()
        return self.monitor is not None and status is not None and _endpoints(status) != self._monitor_key

    def set_node_gpus(self, read: Any) -> None:
        """A cluster run's GPUs per node (pdtui.deploy.deployment.NodeGpusRead; None, or one
        without nodes: this machine's GPUs again), and their history (util/mem %) into the store."""
        self.node_gpus = read if read is not None and read.nodes is not None else None
        t = time.time()
        for node in self.node_gpus.nodes if self.node_gpus is not None else ():
            for gpu in (node.inventory or {}).get("gpus") or ():
                used, total, util = gpu.get("memory_used"), gpu.get("memory_total"), gpu.get("utilization_gpu")
                self.store.record(f"node/{node.host}/gpu/{gpu.get('index')}/util", t, float(util) if isinstance(util, (int, float)) else None)
                self.store.record(f"node/{node.host}/gpu/{gpu.get('index')}/mem", t,
                                  100.0 * used / total if isinstance(used, (int, float)) and isinstance(total, (int, float)) and total else None)

    def sim_gpu_dir(self) -> Path | None:
        return self.control.sim_gpu_dir()


def _endpoints(status: Any) -> tuple:
    return tuple((i.name, getattr(i, "health_url", ""), getattr(i, "log_path", "")) for i in status.instances)


def session_of(app: App) -> Session:
    """The app's session, for widgets that are created by others (dialogs, the editor)."""
    session = getattr(app, "session", None)
    if not isinstance(session, Session):
        raise RuntimeError("this widget needs the pdtui app's session")
    return session


def finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
