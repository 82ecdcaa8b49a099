"""Log-parser throughput: lines/s on one core.

    python benchmarks/telemetry_logparse.py [--lines N]

1. "nothing": a large synthetic log of lines that match no event (uvicorn access lines,
   vLLM INFO lines, LMCache noise warnings, tqdm bars, with process prefixes and ANSI
   codes as vLLM 0.26 + LMCache 0.5.3 write them). Target: >= 200k lines/s.
2. "real mix": the recorded real logs (shared/fixtures), repeated, as they come.
Each figure is the best of 3 runs of `parse_line` over the whole list (single thread),
measured in CPU time of the process so that other load on the machine does not skew it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Same rule as tests/conftest.py, without importing pytest.
SHARED_FIXTURES = Path(os.environ.get("PDTUI_SHARED_DIR") or REPO.parent / "shared") / "fixtures"

from pdtui.telemetry.logparse import parse_line  # noqa: E402

_NOTHING = [
    '(APIServer pid=1841) INFO:     127.0.0.1:{i} - "POST /v1/completions HTTP/1.1" 200 OK',
    '(APIServer pid=1841) INFO:     127.0.0.1:{i} - "GET /metrics HTTP/1.1" 200 OK',
    "(APIServer pid=1841) INFO 11-29 10:53:51 [launcher.py:46] Route: /v1/chat/completions, Methods: POST",
    "(EngineCore pid=1917) INFO 11-29 10:53:41 [parallel_state.py:1946] rank 0 in world size 1 is assigned as "
    "DP rank 0, PP rank 0, PCP rank 0, TP rank 0, EP rank N/A, EPLB rank N/A",
    "(EngineCore pid=1917) \x1b[33;20m[2026-11-29 10:53:49,743] LMCache WARNING:\x1b[0m In connector.start_load_kv, "
    "but the attn_metadata is None \x1b[3m(vllm_v1_adapter.py:455:lmcache.integration.vllm.vllm_v1_adapter)\x1b[0m",
    "(EngineCore pid=1917) \x1b[32;20m[2026-11-29 10:53:46,764] LMCache INFO:\x1b[0m Discovered API module: env_api "
    "\x1b[3m(router_discovery.py:53:lmcache.v1.utils.router_discovery)\x1b[0m",
    "(EngineCore pid=1917) \rLoading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 180.18it/s]",
    "(EngineCore pid=1917) INFO 11-29 10:54:03 [core.py:1326] [shutdown] EngineCore: exiting busy loop",
]


def _rate(lines: list[str]) -> tuple[float, int]:
    """Best of 3, in CPU seconds of this process (robust on a shared machine)."""
    best = float("inf")
    found = 0
    for _ in range(3):
        t0 = time.process_time()
        found = sum(1 for line in lines if parse_line(line) is not None)
        best = min(best, time.process_time() - t0)
    return len(lines) / best, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000, help="synthetic lines (default 500000)")
    args = parser.parse_args()

    nothing = [_NOTHING[i % len(_NOTHING)].format(i=40000 + i % 20000) + "\n" for i in range(args.lines)]
    rate, found = _rate(nothing)
    assert found == 0, f"{found} synthetic lines unexpectedly matched"
    print(f"lines matching nothing : {rate:>12,.0f} lines/s  ({len(nothing):,} lines, target >= 200,000)")

    real_files = [
        SHARED_FIXTURES / "lmcache-logs/1p1d/prefiller.log",
        SHARED_FIXTURES / "lmcache-logs/1p1d/decoder.log",
        SHARED_FIXTURES / "lmcache-logs/1p1d/proxy.log",
        SHARED_FIXTURES / "real-vllm/lmcache-pd/prefiller.log",
        SHARED_FIXTURES / "real-vllm/lmcache-pd/decoder.log",
        SHARED_FIXTURES / "real-vllm/failed-start/decoder-flashinfer-missing.log",
    ]
    real: list[str] = []
    for path in real_files:
        if path.exists():
            real.extend(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True))
    if not real:
        print("real mix: fixtures not found, skipped")
        return 0
    repeats = max(1, args.lines // len(real))
    mixed = real * repeats
    rate, found = _rate(mixed)
    print(
        f"real-log mix           : {rate:>12,.0f} lines/s  ({len(mixed):,} lines, "
        f"{100 * found / len(mixed):.1f}% of them events)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
