"""Encodes a motion dataset into VAE latent sequences: the records LLaMo's stages train on.

  python -m llamo_jax.encode_motion --config=configs/motion_vae.py:tiny --workdir=VAE_DIR \
      [--data=RECORDS_DIR] --out=OUT_PARENT [--name=NAME] [--overwrite]

Reads every clip of every split of the record dataset (default: the config's data.path),
encodes whole clips (T frames -> ceil(T/4) latents, no noise) and writes a dataset in the
same record format (llamo_jax.data.records) with features = latents [K, C], length = K,
captions/attributes/ids carried over, representation "vae_latent:<rep>", fps = rep fps / 4,
and the latents' per-dim mean/std beside them (statistics of the train split).
Each record's attributes (a JSON object; a non-JSON value is kept under "source")
gain "root_speed": the clip's mean horizontal root speed in m/s, which LLaMo's
anneal stage uses to drop static clips.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags


LATENT_PREFIX = "vae_latent:"


def with_root_speed(record: dict, rep) -> str:
  """The record's attributes JSON with "root_speed" (mean horizontal root speed, m/s) added."""
  joints = record["joints"]
  if joints.size == 0:
    joints = np.asarray(rep.to_joints(record["features"]))
  step = np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1)
  speed = float(step.mean() * rep.fps) if len(step) else 0.0
  try:
    attributes = json.loads(record["attributes"]) if record["attributes"] else {}
  except json.JSONDecodeError:
    attributes = {"source": record["attributes"]}
  if not isinstance(attributes, dict):
    attributes = {"source": attributes}
  return json.dumps(dict(attributes, root_speed=round(speed, 5)), sort_keys=True)


def encode_dataset(task, model, data_path: pathlib.Path, out_parent: pathlib.Path, name: str, *,
                   batch_size: int = 32, overwrite: bool = False) -> pathlib.Path:
  """Writes OUT_PARENT/NAME (see module docstring); returns its path."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from llamo_jax.data import records, sources  # pylint: disable=g-import-not-at-top
  from llamo_jax.tasks.motion_vae import _encode  # pylint: disable=g-import-not-at-top
  dataset = records.open_dataset(data_path)
  rep = task.representation
  if dataset.representation != rep.name:
    raise ValueError(f"{data_path} holds {dataset.representation} features; the VAE encodes {rep.name}.")
  target = out_parent / name
  if target.exists() and not overwrite:
    raise FileExistsError(f"{target} exists; pass --overwrite or choose another --name/--out.")

  train_latents = []

  def encoded_clips(split):
    source = dataset.data_source(split)
    for start in range(0, len(source), batch_size):
      recs = [records.decode(source[i]) for i in range(start, min(start + batch_size, len(source)))]
      t_max = max(r["length"] for r in recs)
      t_max += -t_max % 4
      feats = np.zeros((len(recs), t_max, dataset.dim), np.float32)
      for i, r in enumerate(recs):
        feats[i, :r["length"]] = (r["features"] - dataset.mean) / dataset.std
      lengths = np.array([r["length"] for r in recs], np.int32)
      z = np.asarray(_encode(model, jnp.asarray(feats), jnp.asarray(lengths)))
      for i, r in enumerate(recs):
        latents = z[i, :-(-r["length"] // 4)]
        if split == "train":
          train_latents.append(latents)
        yield sources.Clip(clip_id=r["clip_id"], source_id=r["source_id"], features=latents,
                           joints=np.zeros((0, 22, 3), np.float32), captions=tuple(r["captions"]),
                           attributes=with_root_speed(r, rep))

  splits = [s for s, n in dataset.split_sizes.items() if n > 0]
  if "train" not in splits:
    raise ValueError(f"{data_path} has no train split to compute latent statistics from.")
  out_parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_parent))
  try:
    built = records.write_splits(tmp, name=name, dim=model.cfg.latent_dim,
                                 splits={s: encoded_clips(s) for s in splits},
                                 description=f"VAE latents of {data_path}")
    stacked = np.concatenate(train_latents)
    np.save(built / records.MEAN_FILE, stacked.mean(0).astype(np.float32))
    np.save(built / records.STD_FILE, np.maximum(stacked.std(0), 1e-6).astype(np.float32))
    meta = {"format_version": records.FORMAT_VERSION, "name": name,
            "representation": LATENT_PREFIX + rep.name, "dim": model.cfg.latent_dim, "fps": rep.fps / 4,
            "source": str(pathlib.Path(data_path).resolve()), "source_format": "records",
            "min_len": 1, "stats": f"latent mean/std over {len(stacked)} train latents",
            "split_sizes": {s: (n if s in splits else 0) for s, n in dataset.split_sizes.items()}}
    (built / records.META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    if target.exists():
      shutil.rmtree(target)
    built.rename(target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target


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
  from llamo_jax import trainer  # pylint: disable=g-import-not-at-top
  config = f.config
  task, model, step = trainer.restore_for_eval(config, f.workdir)
  data_path = pathlib.Path(f.data or config.data.path)
  name = f.name or f"{data_path.name}_latents"
  out = encode_dataset(task, model, data_path, pathlib.Path(f.out), name,
                       batch_size=f.batch_size, overwrite=f.overwrite)
  logging.info("encoded %s with the VAE at step %d", data_path, step)
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
