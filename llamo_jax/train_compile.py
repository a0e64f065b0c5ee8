"""Compiles a training config's train step for a TPU pod slice, with no TPU, weights or data.

  python -m llamo_jax.train_compile --config=configs/llamo_8b.py --topology=v5p-64 \
      [--num_slices=N] [--stage=joint] [--out=report.json]

The same step the trainer runs (sharding rules, remat policy, gradient accumulation,
donation; llamo_jax/training/aot.py) is lowered with abstract state onto the devices of
the topology (libtpu's compile-only client: `pip install -e ".[tpu]"`) and compiled.
Prints and writes (--out) a JSON report: per-device HBM (arguments, outputs,
temporaries, total vs capacity), FLOPs per step, the step time at 50% MFU, and the
largest per-device batch that fits. Exits 1 with the figures and what to change when
the step does not fit. --topology=local compiles for this machine's devices instead
(e.g. a GPU host; capacity from --hbm_gib on CPU).
Topologies: v4-N, v5p-N (N TensorCores), v5e-N, v6e-N (N chips), e.g. v5p-64 = 32 chips.
"""
from __future__ import annotations

import json
import sys

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from llamo_jax import tasks
from llamo_jax.core import hardware
from llamo_jax.training import aot

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/NAME.py[:arg]).",
                                          lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice (v5p-64, v5e-256, v4-32, v6e-256) or 'local'.")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices joined over DCN (the mesh's replica axis).")
_STAGE = flags.DEFINE_string("stage", None, "Stage to compile (default: the one with the most trainable "
                             "parameters).")
_OUT = flags.DEFINE_string("out", None, "Write the JSON report here (any epath: local or gs://).")
_HBM_GIB = flags.DEFINE_float("hbm_gib", None, "Memory per device in GiB (default: the device kind's).")
_SEARCH = flags.DEFINE_bool("search_batch", True, "Search the largest per-device batch that fits.")
_MAX_COMPILES = flags.DEFINE_integer("max_compiles", 6, "Compiles of the full step, the batch search "
                                     "included (each may take minutes for an 8B model).")
flags.mark_flags_as_required(["config", "topology"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top  (after flags)
  if _TOPOLOGY.value == "local":
    if _NUM_SLICES.value != 1:
      raise app.UsageError("--num_slices needs a TPU --topology (local devices are one slice).")
    devices = jax.devices()
  else:
    try:
      devices = hardware.tpu_devices(_TOPOLOGY.value, _NUM_SLICES.value)
    except (ValueError, ImportError) as e:
      raise app.UsageError(str(e)) from e
  capacity = int(_HBM_GIB.value * hardware.GiB) if _HBM_GIB.value else None

  def write(report, final=False):
    if _OUT.value:
      out = epath.Path(_OUT.value)
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(dict(report, complete=final), indent=1) + "\n")
      logging.info("wrote %s%s", out, "" if final else " (so far)")

  try:
    report = aot.compile_report(_CONFIG.value, tasks.get_task, devices, topology=_TOPOLOGY.value,
                                stage=_STAGE.value, capacity_bytes=capacity, search_batch=_SEARCH.value,
                                max_compiles=_MAX_COMPILES.value, on_update=write)
  except (ValueError, NotImplementedError) as e:  # the config's fault: one message, no traceback
    sys.exit(f"train_compile: {e}")
  print(json.dumps(report, indent=1))
  write(report, final=True)
  if report["fits"] is False:
    print(aot.advice(report), file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
