"""The supervisor's mutable record of one instance (guarded by the supervisor's lock)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pdtui.runtime.logtail import LogTailer
from pdtui.runtime.members import LaunchSpec
from pdtui.runtime.processes import ProcessHandle
from pdtui.runtime.status import InstanceStatus

if TYPE_CHECKING:  # the typed run state (pydantic) loads after the first spawn
    from pdtui.runtime.runstate import ProcessRef


class Member:
    def __init__(self, spec: LaunchSpec) -> None:
        self.spec = spec
        self.status = InstanceStatus(
            name=spec.name,
            kind=spec.kind,
            port=spec.port,
            gpus=spec.gpus,
            log_path=spec.log_path,
            health_url=spec.health_url,
            argv=spec.argv,
        )
        self.handle: ProcessHandle | None = None
        self.generation = 0  # bumped on every (re)start so stale waits can tell
        self.log_start = 0  # offset of this generation's output in the log file
        self.tailer = LogTailer.at_end(spec.log_path) if spec.log_path else None
        self.stopping = False
        self.crashes = 0  # consecutive, for the auto-restart backoff
        self.health_failures = 0  # consecutive /health timeouts while ready
        self.tree: list[ProcessRef] = []  # descendants outside its process group
        self.restarting = False  # a restart may spawn while a stop of the deployment is over
        self.done = threading.Event()  # set when a start attempt ended (ready or failed)
        self.done.set()
        # Set by the monitor when the log shows a start-up milestone: readiness waits on it
        # rather than polling blind.
        self.progress = threading.Event()
