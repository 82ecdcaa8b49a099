#!/usr/bin/env bash
# Run pdtui's benchmarks on a quiet machine (the lent 16-core H200 box) in one go, with
# pdtui's small dependencies installed from wheels (no network there). Usage, from the
# repository root, with the wheels in WHEELS (pip download for Python 3.12, see
# tests/gpu/README.md) and a copy of shared/bench-tools under SHARED/bench-tools:
#   WHEELS=.carry/wheels SHARED=.carry/shared OUT=/tmp/out bash benchmarks/device_suite.sh
set -u
WHEELS=${WHEELS:-.carry/wheels}
export PDTUI_SHARED_DIR=${SHARED:-.carry/shared}
OUT=${OUT:-/tmp/pdtui-bench}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/pdtui-deps "$WHEELS"/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/pdtui-deps" PYTHONUNBUFFERED=1
run() {  # name, then the command
  local name=$1; shift
  echo "=== $name: $*" | tee -a "$OUT/bench.txt"
  timeout 240 "$@" 2>&1 | tail -n 25 | tee -a "$OUT/bench.txt"
}
nproc | sed 's/^/cores: /' | tee "$OUT/bench.txt"
uptime | tee -a "$OUT/bench.txt"
run ui_startup python3 benchmarks/ui_startup.py --runs 7
run ui_idle_cpu python3 benchmarks/ui_idle_cpu.py --window 20 --warm 5
run proxy_overhead python3 benchmarks/proxy_overhead.py --requests 400 --concurrency 64
run runtime_startup python3 benchmarks/runtime_startup.py --repeat 3
run observe_log_flood python3 benchmarks/observe_log_flood.py --seconds 20
run sim_engine python3 benchmarks/sim_engine.py --idle-seconds 8
