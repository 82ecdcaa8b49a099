"""The state of a Slurm run, read from Slurm and the network: plain data, one rule.

States use the supervisor's words (starting, ready, failed, stopped) so the CLI and the
dashboard read a Slurm run like a local one.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from pdtui.cluster.slurm_cmd import TERMINAL_JOB_STATES

HEALTH_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ClusterInstance:
    name: str
    kind: str  # proxy | prefiller | decoder
    state: str  # starting | ready | failed | stopped
    reason: str | None
    node: str | None  # the Slurm host it runs on
    step_id: str | None  # e.g. "123.2" while the step runs
    port: int
    gpus: tuple[int, ...]
    health_url: str
    log_path: str
    load: dict | None = None  # from the engine's /metrics when ready: running, waiting, kv_cache_usage


@dataclass(frozen=True)
class ClusterStatus:
    run_name: str
    run_dir: str
    job_id: str
    job_state: str  # Slurm's: PENDING, RUNNING, CANCELLED, NODE_FAIL, ... (GONE: Slurm forgot it)
    job_reason: str
    instances: tuple[ClusterInstance, ...]

    @property
    def phase(self) -> str:
        states = {i.state for i in self.instances}
        if not self.instances or states == {"stopped"}:
            return "stopped"
        if "failed" in states:
            return "failed" if not states & {"ready", "starting"} or self.job_state != "RUNNING" else "degraded"
        if states == {"ready"}:
            return "ready"
        return "starting"

    def instance(self, name: str) -> ClusterInstance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["phase"] = self.phase
        data["backend"] = "slurm"
        return data


def health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def engine_load(health_url: str) -> dict | None:
    """Requests running/waiting and KV-cache use from the engine's /metrics (None: unreachable)."""
    from pdtui.telemetry.metrics import MetricsParseError, parse_metrics

    url = health_url.rsplit("/health", 1)[0] + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:  # our own URL
            snapshot = parse_metrics(response.read().decode("utf-8", "replace"), keep_prefixes=("vllm:",))
    except (urllib.error.URLError, OSError, ValueError, MetricsParseError):
        return None
    return {key: snapshot.value(key) for key in ("running", "waiting", "kv_cache_usage")}


def last_error_line(log_path: Path) -> str | None:
    from pdtui.runtime.logtail import last_lines
    from pdtui.telemetry.rootcause import find_root_cause

    try:
        lines = last_lines(str(log_path), 400)
    except OSError:
        return None
    cause = find_root_cause(lines)
    if cause is not None:
        return cause.summary
    tail = [line.strip() for line in lines if line.strip()]
    return tail[-1][:300] if tail else None


def gpus_from_log(log_path: Path) -> tuple[int, ...] | None:
    """The GPUs Slurm bound to the step, from the first line pdtui.cluster.step wrote."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    marker = "CUDA_VISIBLE_DEVICES="
    if not first.startswith("pdtui step ") or marker not in first:
        return None
    value = first.split(marker, 1)[1].split(" ", 1)[0]
    try:
        return tuple(int(g) for g in value.split(",") if g)
    except ValueError:
        return None


def instance_state(
    job_state: str,
    job_reason: str,
    step_running: bool,
    exit_code: int | None,
    health_url: str | None,
    log_path: Path,
    node_reason: str | None,
    stopped: bool,
) -> tuple[str, str | None]:
    """(state, reason) of one instance from what Slurm and the network say."""
    if job_state == "PENDING":
        return "starting", f"job pending: {job_reason}"
    if step_running:
        if health_url is None or health_ok(health_url):
            return ("ready", None) if health_url else ("starting", "not probed")
        return "starting", None
    if job_state in TERMINAL_JOB_STATES or job_state == "GONE" or exit_code is not None:
        if stopped and exit_code in (None, 0, 15, 130, 137, 143) or job_state == "CANCELLED" and stopped:
            return "stopped", None
        parts = []
        if node_reason:
            parts.append(node_reason)
        if job_state not in ("RUNNING", "COMPLETING"):
            parts.append(f"Slurm job {job_state}" + (f" ({job_reason})" if job_reason and job_reason != "None" else ""))
        if exit_code not in (None, 0) or (exit_code == 0 and not parts):
            parts.append(f"step exited with code {exit_code}")
        cause = last_error_line(log_path)
        if cause and exit_code not in (None, 0):
            parts.append(cause)
        return "failed", "; ".join(parts) or "ended"
    if node_reason:
        return "failed", node_reason
    return "starting", None  # the job runs; the step is not launched yet
