"""The typed run state: what state.json holds, validated on read, written atomically.

`RunState.load(run_dir)` either returns a fully valid state or raises StateFileError with
one line that names the file and says why (not UTF-8, not JSON, a field of the wrong type
...): the callers list such a run as "unreadable: why" and go on with the others.
pydantic checks every field; nothing reads state.json through `.get()` any more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pdtui.constants import ENGINE_STARTUP_TIMEOUT_S
from pdtui.runtime.rundir import STATE_FILE  # re-exported: the typed state and its file

STATE_VERSION = 1
_SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGQUIT", "SIGHUP")


class StateFileError(Exception):
    """state.json of one run cannot be used; the message says which file and why."""


class _Record(BaseModel):
    # Unknown keys are ignored (a newer pdtui may add some); known ones must be right.
    model_config = ConfigDict(extra="ignore")


class ProcessRef(_Record):
    """One process of an instance's tree that left its process group (e.g. a worker that
    called setsid): found through the run marker, persisted so a later pdtui stops it too."""

    pid: int = Field(gt=0)
    create_time: float
    name: str = ""


class InstanceRecord(_Record):
    kind: Literal["proxy", "prefiller", "decoder"]
    state: Literal["stopped", "starting", "ready", "failed", "stopping"] = "stopped"
    health: str | None = None  # "unresponsive" | "degraded" while ready, with health_detail
    health_detail: str | None = None
    reason: str | None = None
    milestone: str | None = None
    pid: int | None = Field(None, gt=0)
    pgid: int | None = Field(None, gt=0)
    create_time: float | None = None
    cmdline: list[str] | None = None
    tree: list[ProcessRef] = Field(default_factory=list)
    log_start: int = Field(0, ge=0)
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    restarts: int = Field(0, ge=0)
    # How to (re)start it; secrets in env are masked (pdtui never writes them).
    argv: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    health_url: str = ""
    startup_timeout_s: float = Field(ENGINE_STARTUP_TIMEOUT_S, gt=0)
    port: int | None = Field(None, ge=1, le=65535)
    gpus: list[int] = Field(default_factory=list)
    prometheus_dir: str | None = None
    log: str = ""
    stopped_at: float | None = None


class OwnerRecord(_Record):
    pid: int = Field(gt=0)
    create_time: float | None = None


class RunState(_Record):
    version: Literal[1] = 1
    run_name: str
    profile: str
    created: float
    detached: bool = False
    auto_restart: bool = False
    stop_sequence: list[tuple[str, float]] = Field(
        default_factory=lambda: [("SIGINT", 10.0), ("SIGTERM", 5.0), ("SIGKILL", 5.0)]
    )
    owner: OwnerRecord | None = None
    order: list[str] = Field(default_factory=list)
    instances: dict[str, InstanceRecord]

    @field_validator("stop_sequence")
    @classmethod
    def _known_signals(cls, sequence: list[tuple[str, float]]) -> list[tuple[str, float]]:
        for name, grace in sequence:
            if name not in _SIGNALS or grace < 0:
                raise ValueError(f"[{name!r}, {grace}] is not a stop step; valid: [signal, seconds >= 0], signal one of {', '.join(_SIGNALS)}")
        return sequence

    @model_validator(mode="after")
    def _order_names_instances(self) -> RunState:
        unknown = [n for n in self.order if n not in self.instances]
        if unknown:
            raise ValueError(f"order names {', '.join(unknown)}, which are not in instances")
        if not self.order:
            self.order = list(self.instances)
        return self

    # ------------------------------------------------------------------ file ----
    @classmethod
    def load(cls, run_dir: str | Path) -> RunState:
        path = Path(run_dir) / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise StateFileError(f"{path}: no state file (not a pdtui run directory?)") from None
        except OSError as exc:
            raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
        if not raw.strip():
            raise StateFileError(f"{path}: empty file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
        if not isinstance(data, dict):
            raise StateFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
        if data.get("version") != STATE_VERSION:
            raise StateFileError(f"{path}: version {data.get('version')!r} is not supported (expected {STATE_VERSION})")
        data.setdefault("run_name", Path(run_dir).name)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise StateFileError(f"{path}: {_first_problem(exc)}") from None

    def save(self, run_dir: str | Path) -> None:
        from pdtui.model.files import atomic_write

        # No fsync: it describes live processes (nothing is alive after a crash of the
        # machine), and it is written several times on the critical path of `up`.
        atomic_write(Path(run_dir) / STATE_FILE, self.model_dump_json(indent=2) + "\n", durable=False)


def _first_problem(exc: ValidationError) -> str:
    """One line: the field's dotted path, what is wrong, the value found."""
    problems = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = json.dumps(value)[:60] if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
        problems.append(f"{where}: {err['msg']} (found {shown})")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
