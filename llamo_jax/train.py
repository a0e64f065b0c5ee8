"""Training entry point.

  python -m llamo_jax.train --config=configs/lm.py:tiny --workdir=/tmp/run \
      [--config.optimizer.lr=3e-4 ...]

Multi-host: pass --coordinator_address/--num_processes/--process_id, or let
`jax.distributed.initialize()` read them from the cluster environment (TPU pods,
SLURM) with --distributed. When a process dies, the survivors stop after at most
--heartbeat_timeout_s (missed heartbeats to the coordination service); a process that
cannot reach the coordinator at start-up gives up after --initialization_timeout_s.

A SIGTERM at any time (also during start-up) stops the run at the next step boundary
with a checkpoint; input errors (bad config, damaged workdir, full disk, NaN) exit 1
with one sentence instead of a traceback.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from llamo_jax.core import config_files
from llamo_jax.core.errors import InputError
from llamo_jax.training import preemption

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file (configs/NAME.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and samples.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() with the cluster's auto-detected settings.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_s", 30, "Multi-process: seconds without a heartbeat after which a process counts as "
    "lost and the survivors stop (jax.distributed heartbeat_timeout_seconds).", lower_bound=1)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout_s", 300, "Multi-process: seconds to wait for all processes at start-up.",
    lower_bound=1)
_NUM_CPU_DEVICES = flags.DEFINE_integer("num_cpu_devices", None,
                                        "Fake this many CPU devices (testing sharding on one host).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=g-import-not-at-top  (after flags: device count must be set first)
  if _NUM_CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _NUM_CPU_DEVICES.value)
  timeouts = {"heartbeat_timeout_seconds": _HEARTBEAT_TIMEOUT.value,
              "initialization_timeout": _INIT_TIMEOUT.value}
  if _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value, **timeouts)
  elif _DISTRIBUTED.value:
    jax.distributed.initialize(**timeouts)
  # pylint: disable-next=g-import-not-at-top  (start-up order: after the device count and distributed init)
  from llamo_jax import tasks
  # pylint: disable-next=g-import-not-at-top  (as above)
  logging.info("process %d/%d, %d local devices", jax.process_index(), jax.process_count(),
               jax.local_device_count())
  try:
    metrics = tasks.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (InputError, FileNotFoundError, FileExistsError) as e:
    sys.exit(f"train: error: {e}")
  logging.info("final train metrics: %s", metrics)


if __name__ == "__main__":
  preemption.install()  # first thing: a SIGTERM during start-up becomes a clean stop, not a kill
  app.run(main, flags_parser=config_files.parse_flags_with_config)
