"""Prints a few batches of a training config's data pipeline: shapes, dtypes, lengths, captions.

  python -m llamo_jax.peek --config=configs/motion_vae.py:tiny [--split=train] [--num_batches=2]

Builds the config's data first if it is absent (as training would), then iterates the
same Grain loader the trainer uses, on this process only.
"""
from __future__ import annotations

import pathlib
import sys
import time

import jax
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from llamo_jax import tasks
from llamo_jax.core import config_files
from llamo_jax.core import sharding
from llamo_jax.core.errors import InputError


def define_flags() -> None:
  """The CLI flags (defined only when run as a program)."""
  config_flags.DEFINE_config_file("config", None, "Training config whose data to show.")
  flags.DEFINE_string("split", "train", "Split to read.")
  flags.DEFINE_integer("num_batches", 2, "Batches to print.")
  flags.mark_flags_as_required(["config"])


def describe(batch: dict) -> str:
  """One line per field: shape, dtype, and a short summary."""
  lines = []
  for key, value in batch.items():
    value = np.asarray(value)
    if value.dtype == object:
      lines.append(f"  {key:14s} {str(value.shape):16s} e.g. {value[0]!r}")
    elif value.dtype.kind in "biuf":
      lines.append(f"  {key:14s} {str(value.shape):16s} {str(value.dtype):8s} "
                   f"min {value.min():.3g} max {value.max():.3g} mean {value.mean():.3g}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  task = tasks.get_task(config, pathlib.Path("/tmp/llamo_jax_peek"), sharding.make_mesh({"data": -1}))
  try:
    task.prepare()
  except (InputError, FileNotFoundError, FileExistsError) as e:
    sys.exit(f"peek: error: {e}")
  loader = task.make_loader(flags.FLAGS.split, seed=config.seed, process_index=jax.process_index(),
                            process_count=jax.process_count())
  start = time.time()
  for i in range(flags.FLAGS.num_batches):
    batch = next(loader)
    print(f"batch {i} ({time.time() - start:.2f} s since start):\n{describe(batch)}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=config_files.parse_flags_with_config)
