"""`pdtui sim-engine serve MODEL ...` / `python -m pdtui.sim serve MODEL ...`.

Only the standard library is imported here; the engine is imported when a command runs, so
`pdtui --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

USAGE = "usage: python -m pdtui.sim serve MODEL --port P [--kv-transfer-config JSON] [vLLM flags ...]"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim-engine",
        help="run a simulated vLLM engine (demo mode, tests): sim-engine serve MODEL --port P ...",
        description="A process that looks like `vllm serve` from outside. Same argv as vllm.",
        add_help=True,
    )
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="serve MODEL [vLLM flags]")
    parser.set_defaults(func=run_sim_engine)


def run_sim_engine(args: argparse.Namespace) -> int:
    return main(list(args.vllm_args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("Environment: LMCACHE_CONFIG_FILE, CUDA_VISIBLE_DEVICES, PROMETHEUS_MULTIPROC_DIR,")
        print("  PDTUI_SIM_STARTUP_S, PDTUI_SIM_PREFILL_US_PER_TOKEN, PDTUI_SIM_DECODE_MS_PER_TOKEN,")
        print("  PDTUI_SIM_FAULT (oom, crash_after=N, hang, slow_start=S, drop_notif, ignore_sigterm),")
        print("  PDTUI_SIM_GPU_DIR, PDTUI_SIM_KV_TOKENS, PDTUI_SIM_STATS_INTERVAL_S, PDTUI_SIM_PD_TIMEOUT_S,")
        print("  PDTUI_SIM_GPU_TOTAL_BYTES, VLLM_NIXL_SIDE_CHANNEL_HOST/PORT")
        return 0 if argv else 2
    if argv[0] != "serve":
        print(f"error: unknown command {argv[0]!r}; the simulator only does `serve`\n{USAGE}", file=sys.stderr)
        return 2
    from pdtui.sim.settings import SimConfigError, parse_settings

    try:
        settings = parse_settings(argv[1:])
    except SimConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pdtui.sim.runner import serve

    return serve(settings)
