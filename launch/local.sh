#!/usr/bin/env bash
# Run paperjax as N local processes on this machine (CPU, gloo collectives) — the same multi-process
# code path as a TPU pod or a GPU cluster, testable on a laptop.
#
# Assumes: paperjax is installed (pip install -e .) and you are in the repository root.
# Usage:   launch/local.sh NUM_PROCESSES DEVICES_PER_PROCESS [paperjax.main flags ...]
# Example: launch/local.sh 2 2 --config=configs/ul2.py --workdir=runs/ul2-2proc
# Each process gets DEVICES_PER_PROCESS fake CPU devices; logs go to <workdir or runs>/proc<i>.log,
# process 0's output is also streamed here. Exits non-zero if any process fails.
set -euo pipefail
n=${1:?number of processes}; d=${2:?devices per process}; shift 2
port=${PAPERJAX_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
logdir=runs; for a in "$@"; do case $a in --workdir=*) logdir=${a#--workdir=};; esac; done
mkdir -p "$logdir"
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$d ${XLA_FLAGS:-}" JAX_PLATFORMS=cpu \
    python -m paperjax.main "$@" --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" \
    >"$logdir/proc$i.log" 2>&1 &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
tail -f "$logdir/proc0.log" --pid="${pids[0]}" &
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
if [ "$status" -ne 0 ]; then
  echo "launch/local.sh: a process failed (exit $status); see $logdir/proc*.log" >&2
fi
exit "$status"
