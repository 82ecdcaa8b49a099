#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, everything under one directory, for the tests.
#
#   slurm_local.sh start DIR   start munged, slurmctld and slurmd; wait until the node is idle;
#                              print SLURM_CONF=DIR/slurm.conf (export it for srun/squeue/sbatch)
#   slurm_local.sh stop DIR    stop the three daemons started from DIR (by their pid files)
#
# GPUs are a count-only GRES (gpu:8, no device files), and the process tracking / task
# plugins are the ones that work in a container without systemd or cgroups. Runs as root
# (SlurmUser and SlurmdUser root), as CI does. Nothing outside DIR is written.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_pidfile() {
  local file=$1 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

if [ "$action" = stop ]; then
  # Jobs first, so no step outlives the cluster; then the daemons, newest first.
  if [ -f "$dir/slurm.conf" ] && [ -s "$dir/slurmctld.pid" ]; then
    SLURM_CONF="$dir/slurm.conf" scancel --full --user=root 2>/dev/null || true
  fi
  stop_pidfile "$dir/slurmd.pid"
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munged.pid"
  exit 0
fi
[ "$action" = start ] || usage

for cmd in munged slurmctld slurmd sinfo scontrol; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "slurm_local: $cmd not found (apt-get install slurmctld slurmd munge slurm-client)" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "slurm_local: must run as root (SlurmdUser=root)" >&2; exit 3; }

mkdir -p "$dir/state" "$dir/spool/pdtui-node1" "$dir/munge"
chmod 700 "$dir/munge"
# A fresh key for this cluster only (munged insists on a private key file).
if [ ! -s "$dir/munge/munge.key" ]; then
  head -c 1024 /dev/urandom > "$dir/munge/munge.key"
fi
chmod 400 "$dir/munge/munge.key"
socket="$dir/munge/munge.socket"
munged --force --socket="$socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"

ctld_port=$(free_port)
slurmd_port=$(free_port)
node=pdtui-node1
cat > "$dir/slurm.conf" <<CONF
ClusterName=pdtui-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd, no cgroups in a container: track processes by /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
# 1: a node an admin (or a test) set DOWN stays down until resumed, as on a real cluster.
ReturnToService=1
SlurmdParameters=config_overrides
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
NodeName=$node NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=64 RealMemory=1000 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
# GPUs without hardware. A count-only line (Name=gpu Count=8, no File=) is what we want, but
# slurmd 22.05 drops it ("Removing file-less GPU gpu:(null) from final GRES list") and the
# node goes INVAL. So each GPU names a character device under DIR that is /dev/null's
# (major 1, minor 3): nothing is a GPU, no cgroup constrains it (task/none), and Slurm
# still hands out indices 0-7 and sets CUDA_VISIBLE_DEVICES in each step as on a GPU node.
# Where mknod is not allowed, plain files keep the count (no CUDA_VISIBLE_DEVICES then).
mkdir -p "$dir/fake-gpus"
for i in 0 1 2 3 4 5 6 7; do
  [ -e "$dir/fake-gpus/gpu$i" ] || mknod "$dir/fake-gpus/gpu$i" c 1 3 2>/dev/null || : > "$dir/fake-gpus/gpu$i"
done
echo "Name=gpu Count=8 File=$dir/fake-gpus/gpu[0-7]" > "$dir/gres.conf"

export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N "$node"

# Wait until the node is idle (generous bound: a busy 2-core machine starts slowly).
for _ in $(seq 1 600); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
  case "$state" in
    idle) echo "SLURM_CONF=$SLURM_CONF"; exit 0 ;;
    inval*) break ;;
    down*|drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
echo "slurm_local: node $node not idle (state: ${state:-unknown}); logs in $dir" >&2
tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
exit 1
