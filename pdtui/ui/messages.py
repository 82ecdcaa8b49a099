"""Typed messages: requests go up from screens to the app, changes come down to screens.

Screens never call the app's methods: they `post_message` one of the requests below
and the app (which owns the deployment) acts on it. What changed comes down as
`DeploymentChanged` / `GpuReadingChanged`, posted to the active screen; screens then read
the attributes of the `Session` they were given.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

__all__ = [
    "BackgroundLoadToggle", "DeploymentChanged", "DeploymentRequest", "GpuReadingChanged", "LaunchRequested",
    "LoadRunRequested", "LoadRunStopRequested", "ProfileChanged", "RestartPairRequested",
    "RestartRequested", "ShowGpu", "ShowInstance", "ShowObserve", "ShowRequest", "StartInstanceRequested",
    "StopInstanceRequested", "StopOrphansRequested", "StopRequested",
]


class DeploymentRequest(Message):
    """Something to do to the deployment: the app hands every subclass to
    `DeploymentCommands.carry_out` (one handler for all, matched on this base class)."""


class ShowRequest(Message):
    """A screen to show: the app hands every subclass to `Navigator.show`."""


class LaunchRequested(DeploymentRequest):
    """Start the deployment of the loaded profile (after validation and host checks)."""


class StopRequested(DeploymentRequest):
    """Stop every process of the deployment (the app asks for confirmation)."""


class StopOrphansRequested(DeploymentRequest):
    """Stop the GPU processes that carry a pdtui run marker but belong to no live instance
    (an EngineCore left behind by a dead API server); the app asks for confirmation."""


class StopInstanceRequested(DeploymentRequest):
    """Stop the selected instance only (the others keep running)."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name


class StartInstanceRequested(DeploymentRequest):
    """Start the selected (stopped or failed) instance again."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name


class RestartRequested(DeploymentRequest):
    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name


class RestartPairRequested(DeploymentRequest):
    """Restart the instance together with its counterpart of the same rank."""

    def __init__(self, name: str | None) -> None:
        super().__init__()
        self.name = name


class LoadRunRequested(Message):
    """A load run through the proxy; it belongs to the deployment, not to the screen."""

    def __init__(self, spec: Any) -> None:  # pdtui.loadgen.load.LoadSpec
        super().__init__()
        self.spec = spec


class LoadRunStopRequested(Message):
    pass


class BackgroundLoadToggle(DeploymentRequest):
    """Turn the demo's gentle background load on or off."""


class ShowGpu(ShowRequest):
    """Show one GPU: its figures and every process on it (whose, pid, memory, command)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class ShowInstance(ShowRequest):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ShowObserve(ShowRequest):
    """Open the observe screen (log panes, KV transfer, latency, playground) at a tab."""

    def __init__(self, tab: str | None = None) -> None:
        super().__init__()
        self.tab = tab  # an instance name, "kv", "latency" or "playground"


class ProfileChanged(Message):
    """The profile document was opened, saved or edited."""


class DeploymentChanged(Message):
    """The deployment's state changed (launch, ready, crash, stop); read the session."""


class GpuReadingChanged(Message):
    """A new GPU reading is in the session."""
