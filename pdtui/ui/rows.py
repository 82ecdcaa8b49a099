"""From layer data to table rows: plain strings/Text per cell, no widgets.

Kept apart from the widgets so the formatting is tested without running an app, and
so the widgets can compare rows and touch only the cells that changed (repainting a
whole table every second is what costs CPU at idle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from pdtui.ui import format as fmt

if TYPE_CHECKING:  # the GPU layer loads with the first reading, after the first frame
    from pdtui.gpus.processes import AttributedProcess
    from pdtui.gpus.snapshot import GpuInventory, GpuSnapshot

STATE_STYLES = {
    "stopped": "dim",
    "starting": "bold yellow",
    "ready": "bold green",
    "failed": "bold red",
    "stopping": "magenta",
    "planned": "dim",
}

GPU_COLUMNS = ("GPU", "Util", "Memory", "Temp", "Power", "Procs", "Held by")
INSTANCE_COLUMNS = ("Instance", "Role", "GPUs", "Port", "State", "Up", "Run/Wait", "KV")


@dataclass(frozen=True)
class InstanceMetrics:
    """What the instances table shows from an instance's /metrics (None = not known)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1, as vLLM exports it
    error: str | None = None


@dataclass(frozen=True)
class InstanceRowData:
    """One row of the instances table, whatever the source (a plan, or the supervisor)."""

    name: str
    role: str  # "proxy" | "prefiller" | "decoder"
    gpus: tuple[int, ...]
    port: int | None
    state: str
    milestone: str | None = None
    reason: str | None = None
    uptime_s: float | None = None
    pid: int | None = None


def _short_name(name: object) -> str:
    if fmt.missing(name):
        return "N/A"
    return str(name).replace("NVIDIA ", "")


def gpu_holders(
    processes: Iterable[AttributedProcess],
    planned: Mapping[int, list[str]] | None = None,
) -> dict[int, str]:
    """Who holds each GPU: our instance names first, then other users' pids."""
    held: dict[int, list[str]] = {}
    for process in processes:
        if process.orphan_of:  # left on the GPU by a dead API server: pdtui down --all stops it
            label = f"orphan of {process.orphan_of}"
        elif process.owner == "own" and process.instance:
            label = process.instance
        elif process.owner == "other":
            user = "" if fmt.missing(process.user) else f"{process.user}:"
            label = f"{user}{process.pid}"
        else:
            continue
        names = held.setdefault(process.gpu_index, [])
        if label not in names:
            names.append(label)
    return {index: ",".join(names) for index, names in held.items()}


def gpu_row(gpu: GpuSnapshot, holder: str = "", bar_width: int = 8) -> tuple[object, ...]:
    if gpu.lost:
        lost = Text(f"LOST: {gpu.lost_reason or 'GPU is lost'}", style="bold red")
        return (f"{gpu.index} {_short_name(gpu.name)}", lost, "", "", "", "", holder)
    util = gpu.utilization_gpu
    util_pct = None if fmt.missing(util) else float(util)
    mem_pct = fmt.percent_of(gpu.memory_used, gpu.memory_total)
    util_text = Text(fmt.bar(util_pct, bar_width), style=_load_style(util_pct))
    util_text.append(f"{fmt.number(util, '{:>3.0f}', '%')}", style="")
    mem_text = Text(fmt.bar(mem_pct, bar_width), style=_load_style(mem_pct))
    mem_text.append(f"{fmt.memory_pair(gpu.memory_used, gpu.memory_total):>8}", style="")
    procs = gpu.processes
    nprocs = "N/A" if fmt.missing(procs) else str(len(procs))
    return (
        f"{gpu.index} {_short_name(gpu.name)}",
        util_text,
        mem_text,
        fmt.number(gpu.temperature_c, "{:.0f}", "C"),
        fmt.number(gpu.power_draw_w, "{:.0f}", "W"),
        nprocs,
        holder or "-",
    )


def gpu_rows(inventory: GpuInventory, holders: Mapping[int, str]) -> list[tuple[str, tuple[object, ...]]]:
    return [(f"gpu-{g.index}", gpu_row(g, holders.get(g.index, ""))) for g in inventory.gpus]


def _load_style(percent: float | None) -> str:
    if percent is None:
        return "dim"
    if percent >= 90:
        return "red"
    if percent >= 60:
        return "yellow"
    return "green"


# The last start-up step reached, as an operator says it (pdtui.telemetry.events.MILESTONE_KINDS).
MILESTONE_LABELS = {
    "loading_weights": "loading model", "weights_loaded": "weights loaded", "model_loaded": "model loaded",
    "kv_cache_allocated": "KV cache", "lmcache_config_loaded": "LMCache config",
    "lmcache_initialized": "LMCache init", "engine_initialized": "engine init", "api_server_starting": "API server",
    "app_startup_complete": "app up", "uvicorn_running": "HTTP up", "zmq_proxy_started": "ZMQ proxy",
    "nixl_agent_initialized": "NIXL agent", "pipe_initializing": "NIXL pipe", "pipe_initialized": "NIXL pipe up",
}


def milestone_label(kind: str) -> str:
    return MILESTONE_LABELS.get(kind, kind.replace("_", " "))


def state_text(row: InstanceRowData, width: int = 24) -> Text:
    """'starting: KV cache', 'failed: exit code 1: …' — state plus why."""
    label = row.state
    if row.state == "starting" and row.milestone:
        label = f"starting: {milestone_label(row.milestone)}"
    elif row.state == "failed" and row.reason:
        label = f"failed: {row.reason}"
    if len(label) > width:
        label = label[: width - 1] + "…"
    return Text(label, style=STATE_STYLES.get(row.state, ""))


def instance_row(row: InstanceRowData, metrics: InstanceMetrics | None = None) -> tuple[object, ...]:
    metrics = metrics or InstanceMetrics()
    live = row.state == "ready" and row.role != "proxy"
    if live and metrics.error is None and (metrics.running is not None or metrics.waiting is not None):
        run_wait = f"{fmt.maybe_float(metrics.running)}/{fmt.maybe_float(metrics.waiting)}"
    else:
        run_wait = "-"
    if live and metrics.kv_cache_usage is not None:
        kv = f"{metrics.kv_cache_usage * 100:.0f}%"
    else:
        kv = "-"
    return (
        row.name,
        {"prefiller": "P", "decoder": "D", "proxy": "proxy"}.get(row.role, row.role),
        fmt.gpu_list(row.gpus),
        "-" if row.port is None else str(row.port),
        state_text(row),
        fmt.duration(row.uptime_s),
        run_wait,
        kv,
    )


def rows_from_plan(plan) -> list[InstanceRowData]:  # plan: pdtui.model.DeploymentPlan
    """The rows before anything runs: what a launch would start ("planned")."""
    rows = [InstanceRowData("proxy", "proxy", (), plan.proxy.port, "planned")]
    for inst in plan.start_order():
        rows.append(InstanceRowData(inst.name, inst.role, tuple(inst.gpus), inst.port, "planned"))
    return rows


def rows_from_status(status) -> list[InstanceRowData]:  # status: pdtui.runtime.DeploymentStatus
    return [
        InstanceRowData(
            name=i.name,
            role=i.kind,
            gpus=tuple(i.gpus),
            port=i.port,
            state=str(i.state),
            milestone=i.milestone,
            reason=i.reason,
            uptime_s=i.uptime_s,
            pid=i.pid,
        )
        for i in status.instances
    ]


def health_summary(
    rows: list[InstanceRowData],
    phase: str | None,
    inventory: GpuInventory | None,
    run_name: str | None = None,
    gpu_text: str | None = None,
) -> str:
    """The one-line health summary under the tables (`gpu_text`: the GPUs of a cluster
    run's nodes, said instead of this machine's)."""
    engines = [r for r in rows if r.role != "proxy"]
    ready = sum(1 for r in engines if r.state == "ready")
    failed = [r.name for r in engines if r.state == "failed"]
    proxy = next((r for r in rows if r.role == "proxy"), None)
    parts = []
    if phase is None:
        parts.append("not running")
    else:
        parts.append(phase)
    if proxy is not None:
        parts.append(f"proxy {proxy.state if proxy.state != 'planned' else 'not started'}")
    parts.append(f"{ready}/{len(engines)} engines ready")
    if failed:
        parts.append("failed: " + ",".join(failed))
    if gpu_text is not None:
        parts.append(gpu_text)
    elif inventory is None:
        parts.append("GPUs: reading…")
    elif inventory.error:
        parts.append(f"GPUs: {inventory.error}")
    else:
        parts.append(f"{len(inventory.gpus)} GPUs ({inventory.source})")
    if run_name:
        parts.append(f"run {run_name}")
    return " · ".join(parts)


def gpu_detail_lines(gpu, processes: Iterable[AttributedProcess]) -> list[str]:
    """`enter` on a GPU row: its figures, then each process on it and whose it is."""
    lines = [
        f"GPU {gpu.index} {'' if fmt.missing(gpu.name) else gpu.name}  bus {'' if fmt.missing(gpu.pci_bus_id) else gpu.pci_bus_id}",
        f"utilisation {fmt.number(gpu.utilization_gpu, '{:.0f}', '%')}, memory {fmt.memory_pair(gpu.memory_used, gpu.memory_total)}, "
        f"{fmt.number(gpu.temperature_c, '{:.0f}', ' C')}, {fmt.number(gpu.power_draw_w, '{:.0f}', ' W')}",
    ]
    mine = [p for p in processes if p.gpu_index == gpu.index]
    if not mine:
        lines.append("no compute process on this GPU")
    for p in mine:
        whose = (f"orphan of {p.orphan_of}" if p.orphan_of else p.instance if p.owner == "own" and p.instance
                 else f"user {p.user}" if not fmt.missing(p.user) else str(p.owner))
        memory = "" if fmt.missing(p.used_memory) else f"{p.used_memory / 2**30:.1f} GiB  "
        lines.append(f"pid {p.pid}  {whose}  {memory}{p.command_line[:120]}")
    return lines
