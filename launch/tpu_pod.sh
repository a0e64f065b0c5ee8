#!/usr/bin/env bash
# llamo_jax.train on every worker of a Cloud TPU VM pod slice: create (or reuse) the slice,
# install this checkout on every worker, run, stream the workers' logs, optionally delete.
#
#   launch/tpu_pod.sh [options] TPU_NAME ZONE CONFIG WORKDIR [train flags...]
#   launch/tpu_pod.sh --accelerator_type=v5p-64 --version=v2-alpha-tpuv5 --setup --delete \
#       my-tpu us-east5-a configs/llamo_1b.py gs://bucket/runs/llamo_1b --config.total_steps=1000
#
# Options (before the positional arguments):
#   --dry_run                 print the gcloud commands instead of running them (or DRY_RUN=1)
#   --accelerator_type=TYPE   create the slice if it does not exist (with --version)
#   --version=RUNTIME         TPU VM runtime version for a new slice (e.g. v2-alpha-tpuv5)
#   --project=ID              gcloud project (default: gcloud's)
#   --spot                    create a spot slice
#   --setup                   copy this checkout (git HEAD) to ~/llamo_jax on every worker and
#                             pip install it with the tpu extra (always done for a new slice)
#   --delete                  delete the slice when the run ends (also when it fails)
#   --log=FILE                also write the streamed logs to FILE (default: tpu_pod_TPU.log)
# WORKDIR should be gs://: every worker reads and writes it (checkpoints, TensorBoard, data
# prepared by process 0). jax.distributed.initialize() finds the pod by itself (--distributed).
set -euo pipefail
source "$(dirname "$0")/common.sh"

accelerator="" version="" project="" spot=0 setup=0 delete=0 log=""
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --accelerator_type=*) accelerator="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --spot) spot=1 ;;
    --setup) setup=1 ;;
    --delete) delete=1 ;;
    --log=*) log="${1#*=}" ;;
    *) die "unknown option $1 (options go before TPU_NAME; see the header of $0)" ;;
  esac
  shift
done
[[ $# -ge 4 ]] || die "usage: $0 [options] TPU_NAME ZONE CONFIG WORKDIR [train flags...]"
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
log="${log:-tpu_pod_${tpu}.log}"
gcloud_tpu=(gcloud compute tpus tpu-vm)
where=("--zone=$zone")
[[ -n "$project" ]] && where+=("--project=$project")
repo="$(cd "$(dirname "$0")/.." && pwd)"

# ---------------------------------------------------------------- create or reuse
exists=0
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  echo "# dry run: the slice is assumed absent when --accelerator_type is given, present otherwise"
  [[ -z "$accelerator" ]] && exists=1
elif "${gcloud_tpu[@]}" describe "$tpu" "${where[@]}" --format='value(state)' >/dev/null 2>&1; then
  exists=1
fi
if [[ $exists == 0 ]]; then
  [[ -n "$accelerator" && -n "$version" ]] || \
    die "TPU $tpu does not exist in $zone: pass --accelerator_type=TYPE --version=RUNTIME to create it"
  create=("${gcloud_tpu[@]}" create "$tpu" "${where[@]}" "--accelerator-type=$accelerator" "--version=$version")
  [[ $spot == 1 ]] && create+=(--spot)
  run "${create[@]}"
  setup=1
fi
if [[ $delete == 1 ]]; then
  cleanup() { run "${gcloud_tpu[@]}" delete "$tpu" "${where[@]}" --quiet; }
  trap cleanup EXIT
fi

# ---------------------------------------------------------------- the package on every worker
if [[ $setup == 1 ]]; then
  tarball="/tmp/llamo_jax_${tpu}.tar.gz"
  run git -C "$repo" archive --format=tar.gz --prefix=llamo_jax/ -o "$tarball" HEAD
  run "${gcloud_tpu[@]}" scp "$tarball" "$tpu:llamo_jax.tar.gz" "${where[@]}" --worker=all
  run "${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --worker=all --command \
    "rm -rf ~/llamo_jax && tar xzf ~/llamo_jax.tar.gz -C ~ && cd ~/llamo_jax && pip install -q -e '.[tpu]'"
fi

# ---------------------------------------------------------------- run, streaming every worker's log
train=(python -m llamo_jax.train --distributed "--config=$config" "--workdir=$workdir" "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  run "${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --worker=all --command "cd ~/llamo_jax && $(quote "${train[@]}")"
else
  "${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --worker=all --command \
    "cd ~/llamo_jax && $(quote "${train[@]}")" 2>&1 | tee -a "$log"
fi
