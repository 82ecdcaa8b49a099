"""`pdtui logscan FILE... [--json]`: KV-transfer events and alerts in existing logs.

For logs of deployments pdtui did not launch (LMCache's example scripts write
prefiller.log, decoder.log, proxy.log). Prints each KV-transfer event (store, lookup/hit,
retrieve, NIXL transfer stats, handshake) and each alert, then a summary; with --json, one JSON object per
line (`"type"` names the event; the last line is `{"type": "summary", ...}`).
Exit status: 0; 1 when a file could not be scanned (a binary file, a read error); 2 when a
path cannot be read at all (missing, a directory, no permission): one line per path on
stderr, nothing scanned.

Only the standard library is imported at module import time (pdtui --help stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys

from pdtui.text import plural  # standard library only: keeps the import light


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "logscan",
        help="find KV-transfer events and red flags in vLLM/LMCache log files",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="log file(s) to scan")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    parser.set_defaults(func=run_logscan)


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "N/A" if value is None else f"{value:.{digits}f}{unit}"


def _describe(event) -> str | None:
    from pdtui.telemetry.events import (
        Alert,
        HandshakeEvent,
        LookupHitEvent,
        NixlTransferStatsEvent,
        RetrieveEvent,
        StoreEvent,
    )

    if isinstance(event, StoreEvent):
        text = (
            f"store     {event.tokens} tok  {_fmt(event.size_gib, ' GiB', 4)}  {_fmt(event.duration_ms, ' ms')}"
            f"  {_fmt(event.throughput_gbps, ' GB/s')}  put {_fmt(event.put_ms, ' ms')}"
        )
        return text + (f"  {event.request_id}" if event.request_id else "")
    if isinstance(event, LookupHitEvent):
        return (
            f"lookup    {event.request_id}  total {event.total_tokens}  hit {event.hit_tokens}"
            f"  need to load {event.need_to_load}"
        )
    if isinstance(event, RetrieveEvent):
        return (
            f"retrieve  {event.tokens}/{event.required_tokens} tok  {_fmt(event.size_gib, ' GiB', 4)}"
            f"  {_fmt(event.duration_ms, ' ms')}  {_fmt(event.throughput_gbps, ' GB/s')}"
            + (f"  {event.request_id}" if event.request_id else "")
        )
    if isinstance(event, NixlTransferStatsEvent):
        gbps = None if event.throughput_mbps is None else event.throughput_mbps / 1024
        return (
            f"nixl      {event.transfers} transfers  avg {_fmt(event.avg_xfer_ms, ' ms', 3)}"
            f"  p90 {_fmt(event.p90_xfer_ms, ' ms', 3)}  {_fmt(event.avg_mb_per_transfer, ' MB', 3)} each"
            f"  {_fmt(gbps, ' GB/s', 3)}"
        )
    if isinstance(event, HandshakeEvent):
        return f"handshake {event.step}" + (f"  {event.peer}" if event.peer else "")
    if isinstance(event, Alert):
        return f"ALERT     {event.kind}: {event.message}"
    return None


def _print_summary(summary: dict, out) -> None:
    def spread(s: dict | None, unit: str) -> str:
        if not s:
            return "N/A"
        return f"min {s['min']:.2f} / median {s['median']:.2f} / max {s['max']:.2f} {unit}"

    print("\nsummary", file=out)
    for f in summary["files"]:
        extra = f"  PROBLEM: {f['problem']}" if f["problem"] else ""
        print(f"  {f['path']}: {f['lines']} lines, role {f['role'] or 'unknown'}{extra}", file=out)
    print(
        f"  transfers (prefiller stores): {summary['stores']}, {summary['stored_tokens']} tokens,"
        f" {summary['stored_gib']:.4f} GiB",
        file=out,
    )
    print(f"  store throughput: {spread(summary['store_gbps'], 'GB/s')}", file=out)
    print(f"  store put time:   {spread(summary['store_put_ms'], 'ms')}", file=out)
    if summary["nixl_stats_lines"]:
        gib = summary["nixl_gib"]
        print(
            f"  NIXL transfers (vLLM KV Transfer metrics): {summary['nixl_transfers']}"
            f" in {plural(summary['nixl_stats_lines'], 'interval')}"
            + ("" if gib is None else f", {gib:.4f} GiB"),
            file=out,
        )
        print(f"  NIXL throughput:  {spread(summary['nixl_gbps'], 'GB/s')}", file=out)
        print(f"  NIXL xfer time:   {spread(summary['nixl_xfer_ms'], 'ms')} (interval averages)", file=out)
        failed = [f"{n} {what}" for what, n in (("failed transfers", summary["nixl_failed_transfers"]),
                                                 ("failed notifications", summary["nixl_failed_notifications"]))
                  if n]
        if failed:
            print("  NIXL failures: " + ", ".join(failed), file=out)
    print(f"  retrieves: {summary['retrieves']}, {summary['retrieved_tokens']} tokens,"
          f" throughput {spread(summary['retrieve_gbps'], 'GB/s')}", file=out)
    hit = summary["decoder_hit_rate"]
    if hit is None:
        print("  decoder hit rate: N/A (no decoder lookups found)", file=out)
    else:
        tokens = "N/A" if hit["tokens"] is None else f"{100 * hit['tokens']:.2f}%"
        print(
            f"  decoder hit rate: {tokens} of tokens ({hit['hit_tokens']}/{hit['total_tokens']}),"
            f" {hit['requests_hit']}/{hit['requests']} requests hit",
            file=out,
        )
    if summary["lookups_not_on_a_decoder"]:
        print(f"  lookups in non-decoder logs (not counted): {summary['lookups_not_on_a_decoder']}", file=out)
    print(f"  handshake lines: {summary['handshake_lines']}", file=out)
    alerts = summary["alerts"]
    if alerts:
        print("  alerts: " + ", ".join(f"{kind} x{n}" for kind, n in alerts.items()), file=out)
    else:
        print("  alerts: none", file=out)


def short_labels(paths: list[str]) -> dict[str, str]:
    """What prefixes each event line: the file's name, or as many trailing path parts as
    tell the files apart (`1p1d/decoder.log`); the summary names each file in full."""
    from pathlib import PurePath

    parts = {p: PurePath(p).parts for p in paths}
    labels: dict[str, str] = {}
    for path, own in parts.items():
        for depth in range(1, len(own) + 1):
            label = "/".join(own[-depth:])
            if all(other == path or "/".join(theirs[-depth:]) != label for other, theirs in parts.items()):
                break
        labels[path] = label if own else path
    return labels


def run_logscan(args: argparse.Namespace) -> int:
    from pdtui.telemetry.events import StoreBeginEvent, EngineStatsEvent, MilestoneEvent, event_to_dict
    from pdtui.telemetry.logscan import scan_file, summarize

    from pdtui.clipaths import EXIT_PATH_ERROR, input_file_problem

    # A path that cannot be read at all is a usage error: say so for each, scan nothing.
    bad = [(path, problem) for path in args.files if (problem := input_file_problem(path))]
    for path, problem in bad:
        print(f"pdtui logscan: {path}: {problem}", file=sys.stderr)
    if bad:
        return EXIT_PATH_ERROR
    out = sys.stdout
    encode = json.JSONEncoder(check_circular=False).encode  # json.dumps's output, less work per event
    quiet_types = {StoreBeginEvent, EngineStatsEvent, MilestoneEvent}
    scans = []
    labels = short_labels(list(args.files))
    for path in args.files:

        file_field = '{"file": ' + encode(path) + ", "  # the same text as {"file": path, ...}

        def emit(event, label=labels[path], file_field=file_field) -> None:
            if type(event) in quiet_types:
                return
            if args.json:
                out.write(file_field + encode(event_to_dict(event))[1:] + "\n")
            else:
                text = _describe(event)
                when = f"[{event.timestamp}] " if event.timestamp else ""
                out.write(f"{label}: {when}{text}\n")

        scan = scan_file(path, on_event=emit, keep_events=False)
        if scan.problem:
            print(f"pdtui logscan: {path}: {scan.problem}", file=sys.stderr)
        scans.append(scan)
    summary = summarize(scans)
    if args.json:
        out.write(json.dumps({"type": "summary"} | summary) + "\n")
    else:
        _print_summary(summary, out)
    return 1 if any(s.problem for s in scans) else 0
