"""Facts several layers share, in the lowest layer: the standard library only, imports
nothing of pdtui, so the proxy (bottom floor), the model, the runtime and the UI can all
read one source. Change a value here and every default that names it follows."""

from __future__ import annotations

# ---- proxy timeouts (seconds): profile defaults (model/schema.py), the proxy's own
# dataclass (proxy/config.py) and its argv defaults (proxy/cli.py).
PROXY_TIMEOUT_TOKENIZE_S = 30.0
PROXY_TIMEOUT_PREFILL_S = 600.0
PROXY_TIMEOUT_KV_S = 60.0
# Until the decoder's first streamed event, and also the longest silence between two
# events afterwards (a stalled decoder must not hold a client forever).
PROXY_TIMEOUT_DECODE_S = 120.0

# ---- the proxy's other defaults: its argv (proxy/cli.py), its dataclasses (proxy/config.py)
# and the profile's `proxy:` section (model/schema.py), which renders a flag only when set.
PROXY_HEALTH_INTERVAL_S = 2.0
# On SIGTERM/SIGINT, requests still in flight get this long before they are cancelled: well
# inside the supervisor's SIGINT grace, so a stopping proxy never needs SIGKILL.
PROXY_SHUTDOWN_GRACE_S = 3.0
PROXY_CLIENT_HEADER_TIMEOUT_S = 10.0
PROXY_CLIENT_BODY_TIMEOUT_S = 60.0
PROXY_CLIENT_IDLE_TIMEOUT_S = 60.0
PROXY_MAX_CONNECTIONS = 10_000
PROXY_MAX_BODY_BYTES = 64 * 1024 * 1024
PROXY_FIRST_TOKEN_FROM_PREFILLER = False
PROXY_KV_TIMEOUTS_TO_DEGRADE = 3
PROXY_DEGRADED_PROBE_INTERVAL_S = 10.0

# ---- start-up deadlines (seconds): a vLLM engine may compile and load for many minutes.
ENGINE_STARTUP_TIMEOUT_S = 900.0
PROXY_STARTUP_TIMEOUT_S = 30.0

# ---- the per-request stages the proxy reports (/events, /metrics) and the UI shows.
STAGES = ("request", "route", "tokenize", "prefill", "kv_wait", "decode_ttft", "ttft", "decode", "total")
# The stages with a duration histogram (pdtui_proxy_stage_seconds{stage}).
TIMED_STAGES = ("tokenize", "prefill", "kv_wait", "decode_ttft", "ttft", "total")

# ---- proxy modes (profile `kv.mode` / `pdtui proxy --mode`).
MODE_LMCACHE_PD = "lmcache-pd"
MODE_NIXL = "nixl"
MODES = (MODE_LMCACHE_PD, MODE_NIXL)

# ---- the run marker: every process pdtui starts carries RUN_MARKER_ENV=<run name>/<instance>
# in its environment (inherited by EngineCore and worker children), so that pdtui finds
# a run's processes from /proc even when the run directory or its state.json is gone.
RUN_MARKER_ENV = "PDTUI_RUN"
# ... and RUN_ROOT_ENV=<the runs folder it lives in>, so that `status` under one state home
# (XDG_STATE_HOME) does not count the runs of another one as its own.
RUN_ROOT_ENV = "PDTUI_RUN_ROOT"

# ---- an exit code we cannot know: the process was not our child (re-attached run).
EXIT_CODE_UNKNOWN = -999


def reattach_command(run_name: str) -> str:
    """What the operator types to get the control panel back on a detached run: said by
    the TUI's Quit -> Detach and by `pdtui up --detach` (one wording)."""
    return f"pdtui --attach {run_name}"
