#!/bin/bash
# On the lent GPU machine (see tests/gpu/README.md): finish the carried install, then run the
# acceptance for the given profiles, everything under $OUT.
# usage: bash tests/gpu/device_run.sh [--capture-last] PROFILE...
set -u
CAP=""; [ "${1:-}" = "--capture-last" ] && { CAP=1; shift; }
G=.carry/gpulab
[ -f /root/site/.done ] || bash $G/install_site.sh .carry/c3 -- .carry/site.sha256 || exit 1
[ -d /root/pdtui-deps ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /root/pdtui-deps .carry/wheels/*.whl || exit 1
source $G/env.sh
export PYTHONPATH=/root/site:/root/pdtui-deps:$PWD
[ -f /root/tiny-llama/prompts.json ] || python3 $G/make_tiny_llama.py /root/tiny-llama >$OUT/make_tiny_llama.txt 2>&1
nvidia-smi >$OUT/nvidia-smi-before.txt 2>&1
n=$#; i=0
for p in "$@"; do
  i=$((i + 1)); name=$(basename "$p" .yaml)
  extra=""; [ -n "$CAP" ] && [ $i -eq $n ] && extra="--capture-dashboard"
  python3 tests/gpu/acceptance.py "$p" --out /root/acc-$name $extra 2>&1 | tee $OUT/console-$name.txt
  nvidia-smi >/root/acc-$name/nvidia-smi-after.txt 2>&1
  tar -C /root -czf $OUT/acc-$name.tar.gz acc-$name
done
