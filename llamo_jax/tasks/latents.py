"""VAE latent datasets: a motion record dataset encoded by a trained VAE, what LLaMo's stages train on.

`encode_dataset` reads every clip of every split, encodes whole clips (T frames ->
ceil(T/4) latents, no noise) and writes a dataset in the same record format
(llamo_jax.data.records) with features = latents [K, C], length = K,
captions/attributes/ids carried over, representation "vae_latent:<rep>", fps = rep fps / 4,
and the latents' per-dim mean/std beside them (statistics of the train split).
Each record's attributes (a JSON object; a non-JSON value is kept under "source")
gain "root_speed": the clip's mean horizontal root speed in m/s, which LLaMo's
anneal stage uses to drop static clips. The program: `python -m llamo_jax.encode_motion`.
"""
from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from llamo_jax.core import paths
from llamo_jax.data import records
from llamo_jax.data import sources
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT, num_latents
from llamo_jax.motion import skeleton
from llamo_jax.tasks import motion_vae


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


def encode_dataset(task: motion_vae.MotionVAETask, model: nnx.Module, data_path: str | epath.Path, out_parent: str | epath.Path,
                   name: str, *, batch_size: int = 32, overwrite: bool = False) -> epath.Path:
  """Writes OUT_PARENT/NAME (see the module docstring) with `task`'s VAE `model`; returns its path."""
  data_path, out_parent = epath.Path(data_path), epath.Path(out_parent)
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
      t_max = num_latents(t_max) * FRAMES_PER_LATENT
      feats = np.zeros((len(recs), t_max, dataset.dim), np.float32)
      for i, r in enumerate(recs):
        feats[i, :r["length"]] = (r["features"] - dataset.mean) / dataset.std
      lengths = np.array([r["length"] for r in recs], np.int32)
      z = np.asarray(motion_vae.encode(model, jnp.asarray(feats), jnp.asarray(lengths)))
      for i, r in enumerate(recs):
        latents = z[i, :num_latents(r["length"])]
        if split == "train":
          train_latents.append(latents)
        yield sources.Clip(clip_id=r["clip_id"], source_id=r["source_id"], features=latents,
                           joints=np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), captions=tuple(r["captions"]),
                           attributes=with_root_speed(r, rep))

  splits = [s for s, n in dataset.split_sizes.items() if n > 0]
  if "train" not in splits:
    raise ValueError(f"{data_path} has no train split to compute latent statistics from.")
  out_parent.mkdir(parents=True, exist_ok=True)
  tmp = paths.temp_sibling(target)
  tmp.mkdir()
  try:
    built = records.write_splits(tmp, name=name, dim=model.cfg.latent_dim,
                                 splits={s: encoded_clips(s) for s in splits},
                                 description=f"VAE latents of {data_path}")
    stacked = np.concatenate(train_latents)
    paths.save_npy(built / records.MEAN_FILE, stacked.mean(0).astype(np.float32))
    paths.save_npy(built / records.STD_FILE, np.maximum(stacked.std(0), 1e-6).astype(np.float32))
    meta = {"format_version": records.FORMAT_VERSION, "name": name,
            "representation": LATENT_PREFIX + rep.name, "dim": model.cfg.latent_dim, "fps": rep.fps / FRAMES_PER_LATENT,
            "source": str(paths.absolute(data_path)), "source_format": "records",
            "min_len": 1, "stats": f"latent mean/std over {len(stacked)} train latents",
            "split_sizes": {s: (n if s in splits else 0) for s, n in dataset.split_sizes.items()}}
    (built / records.META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    if target.exists():
      target.rmtree()
    built.rename(target)
  finally:
    if tmp.exists():
      tmp.rmtree()
  return target
