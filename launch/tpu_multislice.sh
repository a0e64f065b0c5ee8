#!/usr/bin/env bash
# llamo_jax.train on N TPU slices joined over the data-center network (Multislice): the slices
# come from one queued resource, each worker gets the MEGASCALE_* variables (coordinator =
# worker 0 of slice 0), and the trainer's `replica` mesh axis spans the slices.
#
#   launch/tpu_multislice.sh [options] NAME ZONE NUM_SLICES CONFIG WORKDIR [train flags...]
#   launch/tpu_multislice.sh --accelerator_type=v5p-64 --version=v2-alpha-tpuv5 --delete \
#       ms us-east5-a 2 configs/llamo_8b.py gs://bucket/runs/llamo_8b
#
# Options (before the positional arguments):
#   --dry_run                 print the gcloud commands instead of running them (or DRY_RUN=1)
#   --accelerator_type=TYPE   create the queued resource NAME (slices NAME-0 .. NAME-{N-1})
#   --version=RUNTIME         TPU VM runtime version of new slices
#   --project=ID              gcloud project (default: gcloud's)
#   --spot                    spot slices
#   --setup                   install this checkout on every worker (always done on creation)
#   --delete                  delete the queued resource (and its slices) when the run ends
#   --log=FILE                also write the streamed logs to FILE (default: tpu_multislice_NAME.log)
# WORKDIR must be reachable from every worker (gs://).
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
    *) die "unknown option $1 (options go before NAME; see the header of $0)" ;;
  esac
  shift
done
[[ $# -ge 5 ]] || die "usage: $0 [options] NAME ZONE NUM_SLICES CONFIG WORKDIR [train flags...]"
name="$1"; zone="$2"; num_slices="$3"; config="$4"; workdir="$5"; shift 5
[[ "$num_slices" =~ ^[1-9][0-9]*$ ]] || die "NUM_SLICES must be a positive integer, got '$num_slices'"
log="${log:-tpu_multislice_${name}.log}"
where=("--zone=$zone")
[[ -n "$project" ]] && where+=("--project=$project")
repo="$(cd "$(dirname "$0")/.." && pwd)"
slices=()
for ((i = 0; i < num_slices; i++)); do slices+=("$name-$i"); done

# ---------------------------------------------------------------- queued resource
if [[ -n "$accelerator" ]]; then
  [[ -n "$version" ]] || die "--accelerator_type needs --version=RUNTIME"
  create=(gcloud compute tpus queued-resources create "$name" "${where[@]}" "--node-count=$num_slices"
          "--node-prefix=$name" "--accelerator-type=$accelerator" "--runtime-version=$version")
  [[ $spot == 1 ]] && create+=(--spot)
  run "${create[@]}"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "# dry run: then wait until the queued resource $name is ACTIVE"
  else
    until [[ "$(gcloud compute tpus queued-resources describe "$name" "${where[@]}" \
                --format='value(state.state)')" == ACTIVE ]]; do
      echo "waiting for queued resource $name to become ACTIVE..."; sleep 30
    done
  fi
  setup=1
fi
if [[ $delete == 1 ]]; then
  cleanup() { run gcloud compute tpus queued-resources delete "$name" "${where[@]}" --force --quiet; }
  trap cleanup EXIT
fi

# ---------------------------------------------------------------- the package on every worker
if [[ $setup == 1 ]]; then
  tarball="/tmp/llamo_jax_${name}.tar.gz"
  run git -C "$repo" archive --format=tar.gz --prefix=llamo_jax/ -o "$tarball" HEAD
  for slice in "${slices[@]}"; do
    run gcloud compute tpus tpu-vm scp "$tarball" "$slice:llamo_jax.tar.gz" "${where[@]}" --worker=all
    run gcloud compute tpus tpu-vm ssh "$slice" "${where[@]}" --worker=all --command \
      "rm -rf ~/llamo_jax && tar xzf ~/llamo_jax.tar.gz -C ~ && cd ~/llamo_jax && pip install -q -e '.[tpu]'"
  done
fi

# ---------------------------------------------------------------- run on every slice
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  coordinator="COORDINATOR_IP"
  echo "# dry run: COORDINATOR_IP = the internal IP of worker 0 of ${slices[0]}:"
  run gcloud compute tpus tpu-vm describe "${slices[0]}" "${where[@]}" '--format=value(networkEndpoints[0].ipAddress)'
else
  coordinator="$(gcloud compute tpus tpu-vm describe "${slices[0]}" "${where[@]}" \
                 '--format=value(networkEndpoints[0].ipAddress)')"
fi
train=(python -m llamo_jax.train --distributed "--config=$config" "--workdir=$workdir" "$@")
pids=()
for ((i = 0; i < num_slices; i++)); do
  env=(MEGASCALE_COORDINATOR_ADDRESS="$coordinator:8080" MEGASCALE_NUM_SLICES="$num_slices"
       MEGASCALE_SLICE_ID="$i" MEGASCALE_PORT=8080)
  remote="cd ~/llamo_jax && $(quote env "${env[@]}" "${train[@]}")"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    run gcloud compute tpus tpu-vm ssh "${slices[$i]}" "${where[@]}" --worker=all --command "$remote"
  else
    gcloud compute tpus tpu-vm ssh "${slices[$i]}" "${where[@]}" --worker=all --command "$remote" \
      2>&1 | sed -u "s/^/[slice $i] /" | tee -a "$log" &
    pids+=($!)
  fi
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
