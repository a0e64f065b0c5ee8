#!/usr/bin/env bash
# N processes on this machine forming one CPU mesh (gloo collectives): a rehearsal of a
# multi-host run without a cluster.
#   launch/local_multiprocess.sh 2 4 configs/lm.py:tiny /tmp/mp_run   # 2 processes x 4 CPU devices
#   DRY_RUN=1 launch/local_multiprocess.sh 2 4 configs/lm.py:tiny /tmp/mp_run   # print the commands
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ "${1:-}" == --dry_run ]]; then DRY_RUN=1; shift; fi
[[ $# -ge 4 ]] || die "usage: $0 NUM_PROCESSES NUM_CPU_DEVICES CONFIG WORKDIR [train flags...]"
nproc="$1"; ndev="$2"; config="$3"; workdir="$4"; shift 4
port=$((20000 + RANDOM % 20000))
pids=()
for ((i = 0; i < nproc; i++)); do
  cmd=(env JAX_PLATFORMS=cpu python -m llamo_jax.train "--config=$config" "--workdir=$workdir"
       "--coordinator_address=127.0.0.1:$port" "--num_processes=$nproc" "--process_id=$i"
       "--num_cpu_devices=$ndev" "$@")
  if [[ "${DRY_RUN:-0}" == 1 ]]; then run "${cmd[@]}"; else "${cmd[@]}" & pids+=($!); fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
