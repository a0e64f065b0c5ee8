"""Encodes a motion dataset into VAE latent sequences: the records LLaMo's stages train on.

  python -m llamo_jax.encode_motion --config=configs/motion_vae.py:tiny --workdir=VAE_DIR \
      [--data=RECORDS_DIR] --out=OUT_PARENT [--name=NAME] [--overwrite]

Encodes every split of the record dataset (default: the config's data.path) with the VAE
run's latest checkpoint; the format is described in llamo_jax/tasks/latents.py.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from llamo_jax import tasks
from llamo_jax.core import config_files
from llamo_jax.core.errors import InputError
from llamo_jax.tasks import latents

def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share flag names)."""
  config_flags.DEFINE_config_file("config", None, "The VAE's training config.")
  flags.DEFINE_string("workdir", None, "The VAE's training workdir (checkpoints).")
  flags.DEFINE_string("data", None, "Record dataset to encode (default: config.data.path).")
  flags.DEFINE_string("out", None, "Parent folder of the latent dataset.")
  flags.DEFINE_string("name", None, "Dataset name (default: <data name>_latents).")
  flags.DEFINE_integer("batch_size", 32, "Clips encoded per call.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing latent dataset.")
  flags.mark_flags_as_required(["config", "workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  config = f.config
  data_path = epath.Path(f.data or config.data.path)
  name = f.name or f"{data_path.name}_latents"
  try:
    task, model, step = tasks.restore_for_eval(config, f.workdir)
    out = latents.encode_dataset(task, model, data_path, epath.Path(f.out), name,
                                 batch_size=f.batch_size, overwrite=f.overwrite)
  except (InputError, FileNotFoundError, FileExistsError) as e:
    sys.exit(f"encode_motion: error: {e}")
  logging.info("encoded %s with the VAE at step %d", data_path, step)
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=config_files.parse_flags_with_config)
