#!/usr/bin/env bash
# Run pdtui's benchmarks on a quiet machine (the lent 16-core H200 box), with pdtui's
# dependencies installed from wheels (no network there). From the repository root:
#   WHEELS=.carry/wheels SHARED=.carry/shared BASE=.carry/base.tar OUT=/tmp/out \
#     bash benchmarks/device_suite.sh [startup idle proxy ttfb up flood sim]...
# WHEELS: Python 3.12 wheels of every pdtui dependency the box lacks (for the lent box:
#   textual and its deps, ruamel.yaml, pydantic + pydantic-core + annotated-types +
#   typing-inspection, pyzmq, msgpack, prometheus_client, uvloop; see tests/gpu/README.md);
#   installed once into /tmp/pdtui-deps and put on sys.path by a .pth file, so that the
#   benchmarks' own child processes (which set PYTHONPATH to the tree they run) find them too.
# SHARED: a copy of shared/bench-tools under SHARED/bench-tools.
# BASE: optional `git archive --prefix=base/` tarball of the baseline tree (the proxy
#   benchmarks run it side by side); without it they run without a baseline.
# UP_REF: the git ref whose `up` runs beside this tree's (default main).
# No argument: every benchmark.
set -u
WHEELS=${WHEELS:-.carry/wheels}
export PDTUI_SHARED_DIR=${SHARED:-$PWD/.carry/shared}
OUT=${OUT:-/tmp/pdtui-bench}
mkdir -p "$OUT"
DEPS=/tmp/pdtui-deps
[ -d $DEPS ] || python3 -m pip install -q --no-index --no-deps --no-compile --target $DEPS "$WHEELS"/*.whl || exit 1
python3 -c "import site; open(site.getsitepackages()[0] + '/pdtui-deps.pth', 'w').write('$DEPS\n')" || exit 1
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
baseline=()
if [ -n "${BASE:-}" ] && [ -f "$BASE" ]; then
  mkdir -p /tmp/pdtui-base && tar -C /tmp/pdtui-base -xf "$BASE" && baseline=(--baseline /tmp/pdtui-base/base)
fi
B="$OUT/bench.txt"
run() {  # name, then the command; progress lines of `up` are left out
  local name=$1; shift
  echo "=== $name: $*" | tee -a "$B"
  timeout 300 "$@" 2>&1 | grep -v '^\[ *[0-9.]*s\]' | tail -n 40 | tee -a "$B"
}
nproc | sed 's/^/cores: /' | tee "$B"
uptime | tee -a "$B"
[ $# -eq 0 ] && set -- startup idle proxy ttfb up flood sim
for what in "$@"; do
  case $what in
    startup) run ui_startup python3 benchmarks/ui_startup.py --runs 9 ;;
    idle) run ui_idle_cpu python3 benchmarks/ui_idle_cpu.py --window 20 --warm 5 --repeat 3 ;;
    proxy) run proxy_c64 python3 benchmarks/proxy_overhead.py --requests 1000 --concurrency 64 "${baseline[@]}" ;;
    ttfb) run proxy_ttfb python3 benchmarks/proxy_overhead.py --requests 200 --concurrency 8 --decode-ms-per-token 8 "${baseline[@]}" ;;
    up) run runtime_startup python3 benchmarks/runtime_startup.py --repeat 5 --no-launch-sh --baseline-ref "${UP_REF:-main}" ;;
    flood) run observe_log_flood python3 benchmarks/observe_log_flood.py --seconds 20 ;;
    sim) run sim_engine python3 benchmarks/sim_engine.py --idle-seconds 8 ;;
    *) echo "unknown benchmark: $what" >&2; exit 2 ;;
  esac
done
