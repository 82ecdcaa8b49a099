"""Where an instance's processes run: the seam a second backend plugs into.

The supervisor's state machine, readiness, monitor and control requests never touch a
process directly; they ask an `InstanceBackend` to spawn an instance, tell whether it is
still alive, stop it (with everything it left behind), and where its log is.
`LocalProcessBackend` runs each instance as a local process group (plus the processes
that carry its run marker); a Slurm/Kubernetes backend implements the same five methods
(docs/interfaces.md, "Instance backends").
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Protocol

from pdtui.constants import RUN_MARKER_ENV, RUN_ROOT_ENV
from pdtui.gpus.markers import marker_value
from pdtui.runtime.members import LaunchSpec
from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE, ProcessHandle, spawn
from pdtui.runtime.tree import TreeProcess, TreeStop, leftovers, stop_tree


class InstanceBackend(Protocol):
    def spawn(self, spec: LaunchSpec, env: dict[str, str]) -> ProcessHandle:
        """Start the instance; raises OSError when it cannot be executed."""

    def exit_code(self, handle: ProcessHandle) -> int | None:
        """None while the instance's main process runs; its exit code (or
        EXIT_CODE_UNKNOWN) once it has ended."""

    def stop(self, spec: LaunchSpec, handle: ProcessHandle | None, sequence: tuple[tuple[str, float], ...]) -> TreeStop:
        """Stop the instance and everything it left (INT -> TERM -> KILL); blocking."""

    def leftovers(self, spec: LaunchSpec, handle: ProcessHandle | None) -> list[TreeProcess]:
        """Processes of the instance still alive besides its main process."""

    def log_path(self, spec: LaunchSpec) -> str:
        """Where the instance's output goes (a file pdtui can tail)."""


class LocalProcessBackend:
    """Each instance a process group of its own on this host, marked with PDTUI_RUN."""

    def __init__(self, run_name: str, run_dir: str | Path) -> None:
        self.run_name = run_name
        self.run_dir = Path(run_dir)
        # The run's processes are those marked with its name AND its runs folder.
        self.root = os.path.realpath(self.run_dir.parent)

    def marker(self, spec: LaunchSpec) -> str:
        return marker_value(self.run_name, spec.name)

    def spawn(self, spec: LaunchSpec, env: dict[str, str]) -> ProcessHandle:
        env = dict(env)
        env[RUN_MARKER_ENV] = self.marker(spec)
        env[RUN_ROOT_ENV] = self.root
        return spawn(spec.argv, env, self.log_path(spec), cwd=self.run_dir)

    def exit_code(self, handle: ProcessHandle) -> int | None:
        return handle.poll()

    def stop(self, spec: LaunchSpec, handle: ProcessHandle | None, sequence: tuple[tuple[str, float], ...] = DEFAULT_STOP_SEQUENCE) -> TreeStop:
        return stop_tree(handle, self.run_name, spec.name, sequence, self.gpu_dirs(spec), self.root)

    def leftovers(self, spec: LaunchSpec, handle: ProcessHandle | None) -> list[TreeProcess]:
        return leftovers(self.run_name, spec.name, handle.pid if handle else None, self.gpu_dirs(spec), self.root)

    def log_path(self, spec: LaunchSpec) -> str:
        return spec.log_path or str(self.run_dir / f"{spec.name}.log")

    def gpu_dirs(self, spec: LaunchSpec) -> tuple[str, ...]:
        directory = spec.env.get("PDTUI_SIM_GPU_DIR")
        return (directory,) if directory else ()
