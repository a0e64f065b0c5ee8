#!/usr/bin/env bash
# Runs llamo_jax.train on every worker of a Cloud TPU VM pod slice.
#   launch/tpu_pod.sh TPU_NAME ZONE configs/llamo_1b.py gs://bucket/runs/llamo_1b [extra flags...]
# Each worker must have the repo checked out at ~/llamo_jax with `pip install -e .` done
# (e.g. once with the same gcloud ... --worker=all --command). jax.distributed.initialize()
# discovers the pod topology by itself (--distributed).
set -euo pipefail
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command \
  "cd ~/llamo_jax && python -m llamo_jax.train --distributed --config=$config --workdir=$workdir $*"
