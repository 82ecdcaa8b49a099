"""What the Supervisor's parts share: the attributes supervisor.py sets up and the
methods each part offers the others. Declarations only (for readers and type checkers);
the mixins (starting, monitor, stopping, requests) inherit it, Supervisor implements it."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdtui.model.render import DeploymentPlan
    from pdtui.runtime.backend import InstanceBackend
    from pdtui.runtime.events import EventBus
    from pdtui.runtime.health import HealthChecker
    from pdtui.runtime.member import Member
    from pdtui.runtime.status import InstanceState, InstanceStatus
    from pdtui.runtime.watchdog import WatchdogLink


class SupervisorBase:
    run_dir: Path
    run_name: str
    plan: DeploymentPlan | None
    detached: bool
    auto_restart: bool
    stop_sequence: tuple[tuple[str, float], ...]
    backend: InstanceBackend
    stopped: threading.Event
    last_stopped: list[str]
    monitor_ticks: int
    monitor_tick_s: float
    _members: dict[str, Member]
    _order: list[str]
    _lock: threading.RLock
    _closed: threading.Event
    _wake: threading.Event
    _abort_start: threading.Event
    _deployment_stopping: bool
    _dirty: bool
    _fast_until: float
    _owner: bool
    _read_only: bool
    _records_pending: bool
    _control_dir: str
    _monitor: threading.Thread | None
    _health: HealthChecker
    _bus: EventBus
    _watchdog: WatchdogLink

    if TYPE_CHECKING:
        # supervisor.py (the state machine)
        def _member(self, name: str) -> Member: ...
        def _transition(self, member: Member, generation: int | None = None,
                        allowed_from: tuple[InstanceState, ...] | None = None, **changes: Any) -> bool: ...
        def _persist(self) -> None: ...
        def _write_plan_records(self) -> None: ...
        def _publish(self, event: Any) -> None: ...
        def instance(self, name: str) -> InstanceStatus: ...
        # starting.py
        def _start_member_and_wait(self, member: Member) -> bool: ...
        def _await_ready(self, member: Member, generation: int) -> bool: ...
        def restart_preflight(self, names: list[str]) -> list[str]: ...
        # monitor.py
        def _ensure_monitor(self) -> None: ...
        def _check_exit(self, member: Member, generation: int | None = None, wait: bool = True) -> bool: ...
        # stopping.py
        def _stop_all(self) -> list[str]: ...
        def _kill_member(self, member: Member, mark: bool = True) -> str: ...
        def restart(self, name: str, spec: Any = None) -> Future: ...
        def restart_pair(self, prefiller: str, decoder: str) -> Future: ...
        # requests.py
        def _handle_control_requests(self) -> None: ...
