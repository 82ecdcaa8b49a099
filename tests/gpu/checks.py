"""The acceptance checks on what a run produced: /metrics before and after, and the logs.

Everything is read with pdtui's own parsers (pdtui.telemetry) so the acceptance also
proves they understand the real engines' output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pdtui.telemetry.logscan import scan_file
from pdtui.telemetry.metrics import MetricsParseError, parse_metrics


@dataclass
class Report:
    profile: str
    mode: str
    engine: str
    checks: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)

    def to_dict(self) -> dict:
        return {"profile": self.profile, "mode": self.mode, "engine": self.engine, "passed": self.passed,
                "checks": self.checks, "requests": self.requests, "info": self.info}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str))

    def text(self) -> str:
        lines = [f"== acceptance {self.profile} ({self.mode}, engine {self.engine}): {'PASSED' if self.passed else 'FAILED'}"]
        for key in ("up_seconds", "ready_seconds_per_instance", "down_seconds", "served_model"):
            if key in self.info:
                lines.append(f"  {key}: {self.info[key]}")
        for c in self.checks:
            lines.append(f"  [{'PASS' if c['ok'] else 'FAIL'}] {c['check']}: {c['detail']}")
        return "\n".join(lines)


def _snapshot(text: str):
    try:
        return parse_metrics(text)
    except MetricsParseError:
        return None


def metric_value(text: str, name: str, **labels: str) -> float | None:
    snap = _snapshot(text)
    return snap.value(name, **labels) if snap else None


def family_delta(before: str, after: str, name: str, **labels: str) -> float | None:
    a, b = metric_value(after, name, **labels), metric_value(before, name, **labels)
    if a is None:
        return None
    return a - (b or 0.0)


def lmcache_deltas(before: str, after: str) -> dict[str, float]:
    """Every lmcache:* counter/gauge family present after, with how much it grew."""
    snap_b, snap_a = _snapshot(before), _snapshot(after)
    if snap_a is None:
        return {}
    out = {}
    for name in snap_a.names("lmcache:"):
        va = snap_a.value(name)
        if va is None:
            continue
        vb = snap_b.value(name) if snap_b else None
        out[name] = va - (vb or 0.0)
    return out


def histogram_count(text: str, name: str, **labels: str) -> float:
    snap = _snapshot(text)
    hist = snap.histogram(name, **labels) if snap else None
    return hist.count if hist else 0.0


def check_metrics(report: Report, before: dict[str, str], after: dict[str, str], roles: dict[str, str],
                  mode: str, ok_requests: list) -> None:
    n = len(ok_requests)
    # pdtui's proxy: request counter and every stage histogram moved
    served = family_delta(before["proxy"], after["proxy"], "pdtui_proxy_requests", outcome="ok")
    report.check("proxy requests metric", served == n, f"pdtui_proxy_requests{{outcome=ok}} grew by {served}, {n} expected")
    snap = _snapshot(after["proxy"])
    stages = sorted({s.label("stage") for s in snap.family("pdtui_proxy_stage_seconds").samples}) if snap and snap.family("pdtui_proxy_stage_seconds") else []
    moved = {st: histogram_count(after["proxy"], "pdtui_proxy_stage_seconds", stage=st)
             - histogram_count(before["proxy"], "pdtui_proxy_stage_seconds", stage=st) for st in stages}
    report.info["proxy_stage_counts"] = moved
    # every request passes prefill, the decoder's first event and the total; tokenize and
    # kv_wait are lmcache-pd stages (nixl mode neither tokenizes nor waits for a notification)
    needed = {"prefill", "total"} | ({"tokenize", "kv_wait"} if mode == "lmcache-pd" else set())
    decode = [st for st in stages if st.startswith("decode")]
    report.check("proxy stage metrics", bool(decode) and all(moved.get(st, 0) >= n for st in needed | set(decode)),
                 f"observations per stage {moved}; needed >= {n} in {sorted(needed | set(decode))}")
    if mode == "lmcache-pd":
        notes = family_delta(before["proxy"], after["proxy"], "pdtui_proxy_kv_notifications")
        report.check("proxy KV notifications", notes is not None and notes >= n, f"pdtui_proxy_kv_notifications grew by {notes}")
    prompt_sum = sum(r.prompt_tokens or 0 for r in ok_requests)
    for name, role in roles.items():
        a = after[name]
        if mode == "lmcache-pd":
            deltas = lmcache_deltas(before[name], a)
            grew = sorted(k for k, v in deltas.items() if v > 0)
            report.info[f"lmcache_families_{name}"] = len(_snapshot(a).names("lmcache:")) if _snapshot(a) else 0
            report.check(f"lmcache:* on {name}", bool(deltas) and bool(grew),
                         f"{report.info[f'lmcache_families_{name}']} lmcache:* families, {len(grew)} grew (e.g. {grew[:4]})")
        else:
            snap_a = _snapshot(a)
            nixl = snap_a.names("vllm:nixl") if snap_a else []
            report.info[f"nixl_families_{name}"] = nixl
            if role == "decoder":
                xfers = sum(histogram_count(a, f) - histogram_count(before[name], f) for f in nixl if "xfer_time" in f)
                report.check(f"vllm:nixl_* on {name}", bool(nixl) and xfers > 0, f"{len(nixl)} families, transfer-time observations grew by {xfers}")
        if role == "decoder":
            hits = family_delta(before[name], a, "external_prefix_cache_hits")
            by_source = family_delta(before[name], a, "vllm:prompt_tokens_by_source", source="external_kv_transfer")
            report.info[f"external_prefix_cache_hits_{name}"] = hits
            report.info[f"prompt_tokens_external_kv_transfer_{name}"] = by_source
            if mode == "lmcache-pd":
                ok = hits == prompt_sum
                detail = f"grew by {hits}; prompts sum to {prompt_sum} (prompt_tokens_by_source external_kv_transfer +{by_source})"
            else:  # NIXL moves whole blocks; the last token is always computed on the decoder
                ok = hits is not None and prompt_sum * 0.9 <= hits <= prompt_sum
                detail = f"grew by {hits}; prompts sum to {prompt_sum} (expected 90-100%; by_source external_kv_transfer +{by_source})"
            report.check(f"vllm:external_prefix_cache_hits on {name}", ok, detail)


_NIXL_TRANSFERS = re.compile(r"KV Transfer metrics: Num successful transfers=(\d+)")


def nixl_transfer_lines(run_dir: Path, decoders: list[str]) -> tuple[list[str], int]:
    """vLLM's NixlConnector stats lines in the decoder logs and the transfers they count
    (each line covers the interval since the previous one, so they add up)."""
    lines = []
    for d in decoders:
        path = run_dir / f"{d}.log"
        if path.is_file():
            lines += [ln for ln in path.read_text(errors="replace").splitlines() if "KV Transfer metrics" in ln]
    return lines, sum(int(m) for ln in lines for m in _NIXL_TRANSFERS.findall(ln))


def check_logs(report: Report, run_dir: Path, roles: dict[str, str], mode: str, ok_requests: list, out: Path) -> None:
    decoders = [n for n, r in roles.items() if r == "decoder"]
    if mode == "lmcache-pd":
        lookups = [e for d in decoders for e in scan_file(run_dir / f"{d}.log").lookups if e.total_tokens > 0]
        pairs = []
        for req, look in zip(ok_requests, lookups):
            pairs.append({"request": req.index, "prompt_tokens": req.prompt_tokens, "decoder_total": look.total_tokens,
                          "hit_tokens": look.hit_tokens, "need_to_load": look.need_to_load, "vllm_req": look.request_id})
        report.info["hit_tokens"] = pairs
        good = len(lookups) == len(ok_requests) and all(
            p["hit_tokens"] == p["prompt_tokens"] and p["decoder_total"] == p["prompt_tokens"] + 1 for p in pairs)
        report.check("decoder LMCache hit tokens", good,
                     f"{len(lookups)} lookups for {len(ok_requests)} requests; hit == prompt and total == prompt+1: "
                     + ", ".join(f"{p['hit_tokens']}/{p['prompt_tokens']}" for p in pairs))
        # xPyD: the proxy must have used every prefiller from the first request on (issue 17)
        stored = {n: len(scan_file(run_dir / f"{n}.log").stores) for n, r in roles.items() if r == "prefiller"}
        report.info["stores_per_prefiller"] = stored
        report.check("every prefiller stored KV", all(v > 0 for v in stored.values()),
                     ", ".join(f"{n}: {v} stores" for n, v in stored.items()))
    else:
        lines, count = nixl_transfer_lines(run_dir, decoders)
        report.info["nixl_kv_transfer_lines"] = lines[-3:]
        report.check("decoder 'KV Transfer metrics' log", count >= len(ok_requests),
                     f"{len(lines)} lines, {count} successful transfers for {len(ok_requests)} requests")
    logs = [str(run_dir / f"{n}.log") for n in roles]
    done = subprocess.run([sys.executable, "-m", "pdtui", "logscan", "--json", *logs], capture_output=True, text=True, timeout=120)
    (out / "logscan.jsonl").write_text(done.stdout)
    summary = {}
    for line in done.stdout.splitlines()[::-1]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("type") == "summary":
            summary = obj
            break
    report.info["logscan_summary"] = {k: summary.get(k) for k in ("transfers", "stored_tokens", "retrieves", "retrieved_tokens",
                                                                  "decoder_lookups", "decoder_hit_rate", "handshake_lines", "alerts")}
    n = len(ok_requests)
    if mode == "lmcache-pd":
        rate = summary.get("decoder_hit_rate") or {}
        ok = done.returncode == 0 and summary.get("transfers") == n and summary.get("retrieves") == n and rate.get("requests_hit") == n
        report.check("pdtui logscan", ok, f"exit {done.returncode}; transfers {summary.get('transfers')}, retrieves {summary.get('retrieves')}, "
                     f"decoder requests hit {rate.get('requests_hit')} of {n}")
    else:
        xfer = summary.get("transfers") or 0
        ok = done.returncode == 0 and xfer >= 1
        report.check("pdtui logscan", ok, f"exit {done.returncode}; transfers {xfer} (NixlConnector), handshake lines {summary.get('handshake_lines')}")
