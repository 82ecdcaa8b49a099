"""The supervisor: run directories, process groups, start order, readiness, stop/restart,
crash detection, the state file for detach/re-attach. See docs/interfaces.md.

Names are imported lazily (PEP 562) so that `pdtui.deploy.cli`, imported by
`pdtui --help`, pulls in nothing beyond the standard library.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DeploymentEvent": "pdtui.runtime.events",
    "Event": "pdtui.runtime.events",
    "EventBus": "pdtui.runtime.events",
    "LogLines": "pdtui.runtime.events",
    "ReadinessProgress": "pdtui.runtime.events",
    "StateChanged": "pdtui.runtime.events",
    "PreflightError": "pdtui.runtime.preflight",
    "RunInfo": "pdtui.runtime.runs",
    "find_runs": "pdtui.runtime.runs",
    "new_run_dir": "pdtui.runtime.rundir",
    "resolve_run": "pdtui.runtime.runs",
    "runs_root": "pdtui.runtime.rundir",
    "DeploymentStatus": "pdtui.runtime.status",
    "InstanceState": "pdtui.runtime.status",
    "InstanceStatus": "pdtui.runtime.status",
    "AttachError": "pdtui.runtime.supervisor",
    "Supervisor": "pdtui.runtime.supervisor",
    "owner_of": "pdtui.runtime.supervisor",
    "control": "pdtui.runtime.control",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pdtui.runtime' has no attribute {name!r}")
    value = importlib.import_module(module)
    if name != "control":
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
