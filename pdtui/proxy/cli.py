"""`pdtui proxy` / `python -m pdtui.proxy`: the command line of the PD proxy.

Only the standard library is imported here; aiohttp, zmq and prometheus_client
load inside the command, so `pdtui --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

import pdtui.constants as C


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("lmcache-pd", "nixl"), default="lmcache-pd",
                        help="lmcache-pd: LMCache PD backend protocol (ZMQ ProxyNotif); "
                        "nixl: vLLM NixlConnector (do_remote_decode)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="HTTP port (default 9100)")
    parser.add_argument("--zmq-host", default="127.0.0.1",
                        help="bind address of the ZMQ PULL socket for ProxyNotif (lmcache-pd)")
    parser.add_argument("--zmq-port", type=int, default=7500,
                        help="ZMQ PULL port = the prefillers' pd_proxy_port (default 7500)")
    parser.add_argument("--prefiller", action="append", metavar="URL",
                        help="prefiller base URL, repeatable (e.g. http://127.0.0.1:7100)")
    parser.add_argument("--decoder", action="append", metavar="URL",
                        help="decoder base URL, repeatable")
    parser.add_argument("--decoder-init-ports", action="append", metavar="CSV",
                        help="one per --decoder, same order: its pd_peer_init_port list (one per TP rank)")
    parser.add_argument("--decoder-alloc-ports", action="append", metavar="CSV",
                        help="one per --decoder, same order: its pd_peer_alloc_port list")
    parser.add_argument("--routing", choices=("round-robin", "least-outstanding"),
                        default="round-robin")
    parser.add_argument("--sticky-header", metavar="NAME",
                        help="requests carrying this header stick to one prefiller/decoder pair")
    parser.add_argument("--timeout-tokenize", type=float, default=C.PROXY_TIMEOUT_TOKENIZE_S, metavar="S")
    parser.add_argument("--timeout-prefill", type=float, default=C.PROXY_TIMEOUT_PREFILL_S, metavar="S")
    parser.add_argument("--timeout-kv", type=float, default=C.PROXY_TIMEOUT_KV_S, metavar="S",
                        help="wait for the KV-ready notifications (lmcache-pd)")
    parser.add_argument("--timeout-decode", type=float, default=C.PROXY_TIMEOUT_DECODE_S, metavar="S",
                        help="wait for the decoder's first byte, and longest silence after it")
    parser.add_argument("--health-interval", type=float, default=C.PROXY_HEALTH_INTERVAL_S, metavar="S",
                        help="seconds between background health checks of each backend")
    parser.add_argument("--timeline-history", type=int, default=200, metavar="N",
                        help="request timelines kept in memory for GET /events")
    client = parser.add_argument_group("client connections")
    client.add_argument("--client-header-timeout", type=float, default=C.PROXY_CLIENT_HEADER_TIMEOUT_S, metavar="S",
                        help="close a connection whose request headers take longer (default %(default)g)")
    client.add_argument("--client-body-timeout", type=float, default=C.PROXY_CLIENT_BODY_TIMEOUT_S, metavar="S",
                        help="answer 408 when a request body takes longer to arrive (default %(default)g)")
    client.add_argument("--client-idle-timeout", type=float, default=C.PROXY_CLIENT_IDLE_TIMEOUT_S, metavar="S",
                        help="close a kept-alive connection idle this long (default %(default)g)")
    client.add_argument("--max-connections", type=int, default=C.PROXY_MAX_CONNECTIONS, metavar="N",
                        help="client connections at once (default %(default)d, capped by the open-files "
                        "limit); past it the longest-idle one is closed, or 503 if all are busy")
    client.add_argument("--max-body-bytes", type=int, default=C.PROXY_MAX_BODY_BYTES, metavar="N",
                        help="larger request bodies get 413 (default 64 MiB)")
    parser.add_argument("--first-token-from-prefiller", action="store_true",
                        help="stream the prefiller's first token before the KV wait and decode")
    parser.add_argument("--tokenize-on", choices=("pair", "prefiller"), default="pair",
                        help="who tokenizes a request in lmcache-pd mode: its prefiller and its "
                        "decoder in turn (default), or always its prefiller")
    parser.add_argument("--kv-timeouts-to-degrade", type=int, default=C.PROXY_KV_TIMEOUTS_TO_DEGRADE, metavar="K",
                        help="after K kv_wait timeouts in a row a prefiller is degraded "
                        "(not routed to) until a probe request gets its notifications (default %(default)d)")
    parser.add_argument("--degraded-probe-interval", type=float, default=C.PROXY_DEGRADED_PROBE_INTERVAL_S, metavar="S",
                        help="seconds between probe requests through a degraded prefiller (default %(default)g)")
    parser.add_argument("--log-level", default="INFO")
    lm = parser.add_argument_group("LMCache example-proxy spelling (alternative)")
    lm.add_argument("--prefiller-host", help="CSV of hosts")
    lm.add_argument("--prefiller-port", help="CSV of ports")
    lm.add_argument("--num-prefillers", type=int, default=1)
    lm.add_argument("--decoder-host", help="CSV of hosts")
    lm.add_argument("--decoder-port", help="CSV of ports")
    lm.add_argument("--decoder-init-port", help="CSV, one per TP rank")
    lm.add_argument("--decoder-alloc-port", help="CSV, one per TP rank")
    lm.add_argument("--num-decoders", type=int, default=1)
    lm.add_argument("--proxy-host", help="= --zmq-host")
    lm.add_argument("--proxy-port", type=int, help="= --zmq-port")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="run the PD proxy (LMCache PD or vLLM NIXL)",
        description="The PD proxy: routes each request to a prefiller then a decoder, "
        "with /health, /metrics and a per-request timeline at /events. "
        "The backends' API key (sent as Authorization: Bearer) is read from $VLLM_API_KEY, "
        "else $OPENAI_API_KEY.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from pdtui.proxy.config import ConfigError, from_args

    try:
        config = from_args(args)
    except ConfigError as exc:
        print(f"pdtui proxy: {exc}", file=sys.stderr)
        return 2
    from pdtui.proxy.server import serve_forever

    return serve_forever(config, log_level=args.log_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdtui.proxy", description="pdtui's PD proxy")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except KeyboardInterrupt:
        return 130
