"""The cockpit's rows, from the session's store (no widgets; tested without an app).

GPU rows: utilisation and memory now plus their history; instance rows: state, req/s,
tokens/s, KV-cache use, each history on a scale shared by the column; the KV-transfer
strip: one row per prefiller -> decoder pair from the monitor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from rich.table import Table
from rich.text import Text

from pdtui.ui import format as fmt
from pdtui.ui import rows as rowfmt
from pdtui.ui.spark import BucketCache, shared_max, sparkline, time_buckets

if TYPE_CHECKING:
    from pdtui.gpus.snapshot import GpuInventory
    from pdtui.telemetry.monitor import DeploymentMonitor
    from pdtui.telemetry.series import SeriesStore

__all__ = ["GPU_COLUMNS", "INSTANCE_COLUMNS", "gpu_rows", "history_width", "instance_rows", "kv_strip", "node_gpu_rows"]

# "5m": the history cells show the last five minutes.
GPU_COLUMNS = ("GPU", "Util", "Util 5m", "Memory", "Mem 5m", "Temp", "Power", "Held by")
INSTANCE_COLUMNS = ("Instance", "Role", "State", "Up", "Req/s", "Tok/s", "Tok/s 5m", "KV", "KV 5m")
# Cells besides the two history columns, with DataTable's padding: what a box needs first.
GPU_FIXED_WIDTH = 62
INSTANCE_FIXED_WIDTH = 64
HISTORY_S = 300.0  # what a history cell covers: the last five minutes
_BUCKETS = BucketCache()  # per series: its history cells, updated by the new samples only


def history_width(box_width: int, fixed: int) -> int:
    """Each of a table's two history columns gets half of what its box has left, 6..40."""
    return max(6, min(40, (box_width - fixed) // 2))


def _values(store: SeriesStore, name: str, width: int) -> list[float]:
    """The last five minutes as `width` time-aligned buckets (stable between samples)."""
    series = store.get(name)
    return _BUCKETS.buckets(series, width, HISTORY_S) if series is not None else time_buckets([], width, HISTORY_S)


def _rate(value: float | None, digits: str = "{:.1f}") -> str:
    if value is None or math.isnan(value):
        return "-"
    return digits.format(value)


def gpu_rows(inventory: GpuInventory, holders: Mapping[int, str], store: SeriesStore, width: int
             ) -> list[tuple[str, tuple[object, ...]]]:
    out: list[tuple[str, tuple[object, ...]]] = []
    for gpu in inventory.gpus:
        if gpu.lost:
            lost = Text(f"LOST: {gpu.lost_reason or 'GPU is lost'}", style="bold red")
            out.append((f"gpu-{gpu.index}", (f"{gpu.index} {rowfmt._short_name(gpu.name)}", lost, "", "", "", "", "", holders.get(gpu.index, ""))))
            continue
        util = gpu.utilization_gpu
        util_pct = util if isinstance(util, (int, float)) else None
        mem_pct = fmt.percent_of(gpu.memory_used, gpu.memory_total)
        util_hist = sparkline(_values(store, f"gpu/{gpu.index}/util", width), width, 100.0)
        mem_hist = sparkline(_values(store, f"gpu/{gpu.index}/mem", width), width, 100.0)
        out.append((f"gpu-{gpu.index}", (
            f"{gpu.index} {rowfmt._short_name(gpu.name)}",
            Text(fmt.number(util, "{:>3.0f}", "%"), style=rowfmt._load_style(util_pct)),
            Text(util_hist, style=rowfmt._load_style(util_pct)),
            Text(f"{fmt.memory_pair(gpu.memory_used, gpu.memory_total):>8}", style=rowfmt._load_style(mem_pct)),
            Text(mem_hist, style=rowfmt._load_style(mem_pct)),
            fmt.number(gpu.temperature_c, "{:.0f}", "C"),
            fmt.number(gpu.power_draw_w, "{:.0f}", "W"),
            holders.get(gpu.index, "") or "-",
        )))
    return out


def node_gpu_rows(nodes: tuple, holders: Mapping[tuple[str, int], str], store: SeriesStore, width: int
                  ) -> list[tuple[str, tuple[object, ...]]]:
    """A cluster run's GPUs grouped by node: a row naming the node, then its GPUs (from
    `pdtui gpus --json` run on it: pdtui.cluster.gpus.NodeGpus); `holders`: the instances
    Slurm placed on (host, GPU index)."""
    out: list[tuple[str, tuple[object, ...]]] = []
    for node in nodes:
        gpus = (node.inventory or {}).get("gpus") or []
        what = Text(node.error, style="bold red") if node.error else f"{len(gpus)} GPU(s)"
        out.append((f"node-{node.host}", (Text(f"node {node.host}", style="bold"), what, "", "", "", "", "", "")))
        for gpu in gpus:
            index, series = gpu.get("index"), f"node/{node.host}/gpu/{gpu.get('index')}"
            util, used, total = gpu.get("utilization_gpu"), gpu.get("memory_used"), gpu.get("memory_total")
            util_pct = util if isinstance(util, (int, float)) else None
            mem_pct = fmt.percent_of(used, total)
            pids = [str(p.get("pid")) for p in gpu.get("processes") or []]
            held = holders.get((node.host, index)) if pids else None
            out.append((f"node-{node.host}-{index}", (
                f" {index} {rowfmt._short_name(gpu.get('name'))}",
                Text(fmt.number(util, "{:>3.0f}", "%"), style=rowfmt._load_style(util_pct)),
                Text(sparkline(_values(store, f"{series}/util", width), width, 100.0), style=rowfmt._load_style(util_pct)),
                Text(f"{fmt.memory_pair(used, total):>8}", style=rowfmt._load_style(mem_pct)),
                Text(sparkline(_values(store, f"{series}/mem", width), width, 100.0), style=rowfmt._load_style(mem_pct)),
                fmt.number(gpu.get("temperature_c"), "{:.0f}", "C"),
                fmt.number(gpu.get("power_draw_w"), "{:.0f}", "W"),
                held or ",".join(pids) or "-",
            )))
    return out


def nodes_summary(nodes: tuple) -> str:
    """'8 GPUs on 1 node(s)', and the nodes whose GPUs could not be read."""
    gpus = sum(len((n.inventory or {}).get("gpus") or []) for n in nodes)
    failed = [n.host for n in nodes if n.error]
    return f"{gpus} GPUs on {len(nodes)} node(s)" + (f" (unread: {','.join(failed)})" if failed else "")


def _tokens(store: SeriesStore, name: str, width: int) -> tuple[float | None, list[float]]:
    """Tokens/s in + out (a prefiller's are prompt tokens, a decoder's generated ones)."""
    prompt = _values(store, f"{name}/prompt_tokens_per_s", width)
    gen = _values(store, f"{name}/generation_tokens_per_s", width)
    n = max(len(prompt), len(gen))
    prompt = [math.nan] * (n - len(prompt)) + prompt
    gen = [math.nan] * (n - len(gen)) + gen
    merged = [a + b if not (math.isnan(a) and math.isnan(b)) else math.nan
              for a, b in ((0.0 if math.isnan(p) and not math.isnan(g) else p, 0.0 if math.isnan(g) and not math.isnan(p) else g)
                           for p, g in zip(prompt, gen))]
    now = [v for v in (store.latest(f"{name}/prompt_tokens_per_s"), store.latest(f"{name}/generation_tokens_per_s")) if v is not None]
    return (sum(now) if now else None), merged


def instance_rows(found: list[rowfmt.InstanceRowData], store: SeriesStore, width: int
                  ) -> list[tuple[str, tuple[object, ...]]]:
    tokens = {r.name: _tokens(store, r.name, width) for r in found if r.role != "proxy"}
    kv = {r.name: _values(store, f"{r.name}/kv_cache_usage", width) for r in found if r.role != "proxy"}
    tok_max = shared_max([hist for _, hist in tokens.values()])
    out: list[tuple[str, tuple[object, ...]]] = []
    for row in found:
        live = row.state == "ready"
        if row.role == "proxy":
            req = store.latest("proxy/requests_per_s") if live else None
            cells: tuple[object, ...] = (row.name, "proxy", rowfmt.state_text(row, 24), fmt.duration(row.uptime_s),
                                         _rate(req), "-", "", "-", "")
            out.append((row.name, cells))
            continue
        tok_now, tok_hist = tokens[row.name]
        kv_now = store.latest(f"{row.name}/kv_cache_usage") if live else None
        cells = (
            row.name,
            {"prefiller": "P", "decoder": "D"}.get(row.role, row.role),
            rowfmt.state_text(row, 24),
            fmt.duration(row.uptime_s),
            _rate(store.latest(f"{row.name}/request_rate") if live else None),
            _rate(tok_now if live else None, "{:.0f}"),
            Text(sparkline(tok_hist, width, tok_max or None), style="cyan"),
            "-" if kv_now is None else f"{kv_now * 100:.0f}%",
            Text(sparkline(kv[row.name], width, 1.0), style="magenta"),
        )
        out.append((row.name, cells))
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def kv_strip(monitor: DeploymentMonitor | None, width: int) -> tuple[object, Table | str]:
    """Per prefiller -> decoder pair: transfers/s, GB/s, hit rate, kv_wait p50/p99, history.
    Returns (key, renderable): the key compares equal when nothing shown changed, so the
    caller repaints only then."""
    if monitor is None:
        text = "KV transfer: nothing running (u launches the deployment)"
        return text, text
    pairs = monitor.pair_rows()
    if not pairs:
        problem = monitor.events_problem()
        text = "KV transfer: " + (problem or "no request through the proxy yet")
        return text, text
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False, header_style="bold")
    narrow = width < 100  # 80 columns: short headers, no history, names in full
    history = 0 if narrow else min(40, width - 80)
    columns: list[tuple[str, Literal["left", "right"]]] = [("KV P → D", "left"), ("xfer/s", "right"), ("GB/s", "right"), ("hit", "right"),
               ("kv p50" if narrow else "kv_wait p50", "right"), ("kv p99" if narrow else "kv_wait p99", "right")]
    if history >= 6:
        columns.append(("xfer/s 5m", "left"))
    name_width = max(len(f"{p.prefiller} → {p.decoder}") for p in pairs)
    for column, justify in columns:  # the pair's names are never cut: the numbers give way
        table.add_column(column, justify=justify, no_wrap=True, min_width=name_width if column == "KV P → D" else None)
    store = monitor.store
    from pdtui.telemetry.monitor import pair_key

    key: list[object] = [width]
    for p in pairs:
        cells: list[str] = [
            f"{p.prefiller} → {p.decoder}",
            f"{p.requests_per_s:.2f}",
            "-" if p.est_gbps is None else f"{p.est_gbps:.2g}",
            "-" if p.decoder_hit_rate is None else f"{p.decoder_hit_rate * 100:.0f}%",
            _ms(p.kv_wait_p50_ms),
            _ms(p.kv_wait_p99_ms),
        ]
        if history >= 6:
            hist = _values(store, f"{pair_key(p.prefiller, p.decoder)}/requests_per_s", min(history, 40))
            cells.append(sparkline(hist, min(history, 40)))
        key.append(tuple(cells))
        table.add_row(*cells[:6], *(Text(str(c), style="green") for c in cells[6:]))
    return tuple(key), table
