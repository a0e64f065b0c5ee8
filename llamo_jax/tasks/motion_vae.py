"""Training and evaluation of the causal motion VAE (docs/design.md, Motion VAE).

Config keys: model (MotionVAEConfig fields; input_dim is set from the representation),
loss (VAELossConfig fields), data (the motion pipeline's keys, see llamo_jax/data/pipeline.py),
eval_batches, eval_renders. A staged config (training.stages.stage_plan) may give a stage a `data`
dict that overrides data keys for that stage's training stream, e.g. a length curriculum:
short crops first, then whole clips (`stages.clips.data.max_len=196`). Evaluation always
reads the base `data` config, so its numbers compare across stages.
"""
from __future__ import annotations

import json
from typing import Iterator

from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from llamo_jax.data import pipeline as motion_pipeline
from llamo_jax.data import prepare
from llamo_jax.eval import action_checks
from llamo_jax.eval import motion_metrics
from llamo_jax.models import vae_loss
from llamo_jax.models.motion_vae import MotionVAE, MotionVAEConfig, num_latents
from llamo_jax.motion import representation as representation_lib
from llamo_jax.training import task as task_lib


class MotionVAETask(task_lib.Task):
  """The motion VAE on normalised features of one representation (hml263 or mm272)."""

  def prepare(self) -> None:
    cfg = self.config
    if "corpus" in cfg.data:
      corpus_dir = prepare.ensure_synthetic_corpus(cfg.data.corpus)
      prepare.ensure_records(corpus_dir, cfg.data.path, cfg.data.representation,
                             mirror=bool(cfg.data.get("mirror", False)))
    self._build(*motion_pipeline.load_stats(cfg.data))

  def prepare_shapes(self) -> None:
    """The model and loss without data: the loss's normalisation stats are placeholders
    (zeros / ones of the representation's dim), which change no shape."""
    dim = representation_lib.get_representation(self.config.data.representation).dim
    self._build(np.zeros((dim,), np.float32), np.ones((dim,), np.float32))

  def _build(self, mean: np.ndarray, std: np.ndarray) -> None:
    cfg = self.config
    self.representation = representation_lib.get_representation(cfg.data.representation)
    self.model_config = MotionVAEConfig.from_dict({**cfg.model.to_dict(), "input_dim": self.representation.dim})
    self.mean, self.std = mean, std
    self.loss_fn = vae_loss.VAELoss(
        vae_loss.VAELossConfig.from_dict({**cfg.loss.to_dict(), "representation": self.representation.name}),
        self.mean, self.std)

  def abstract_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """What the loss reads of `data.pipeline`'s batches: features [B, T, D], mask [B, T], length
    [B], T the stage's data.max_len."""
    t = int(self.stage_config().data.max_len)
    return {"features": jax.ShapeDtypeStruct((batch_size, t, self.representation.dim), jnp.float32),
            "mask": jax.ShapeDtypeStruct((batch_size, t), jnp.bool_),
            "length": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}

  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return MotionVAE(self.model_config, rngs=rngs)

  def loss(self, model, batch, rng):
    out = model(batch["features"], lengths=batch["length"], noise_key=rng)
    return self.loss_fn(out, batch["features"], batch["mask"])

  def make_loader(self, split: str, *, seed: int, process_index: int, process_count: int) -> Iterator:
    return motion_pipeline.make_motion_loader(
        self.stage_config(), split, seed=seed, process_index=process_index, process_count=process_count)

  def stage_config(self) -> ml_collections.ConfigDict:
    """The config with the current stage's `data` overrides applied (the config itself if none)."""
    overrides = self.stage.settings.get("data", None) if self.stage is not None else None
    if not overrides:
      return self.config
    unknown = sorted(set(overrides.keys()) - set(self.config.data.keys()))
    if unknown:
      raise ValueError(f"config.stages.{self.stage.name}.data has unknown keys {unknown}; "
                       f"it may override only config.data keys {sorted(self.config.data.keys())}.")
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.data.update(overrides)
    return config

  def units_per_batch(self, batch):
    return "frames", float(batch["mask"].sum())

  # ------------------------------------------------------------------ evaluation

  def reconstruct_joints(self, model: MotionVAE, features: np.ndarray, lengths: np.ndarray
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised features [B,T,C] -> (reconstructed joints, ground-truth joints), per clip [T_i,22,3]."""
    recon = np.asarray(_reconstruct(model, jnp.asarray(features), jnp.asarray(lengths)))
    preds, targets = [], []
    for i, n in enumerate(np.asarray(lengths)):
      preds.append(self.representation.to_joints(recon[i, :n] * self.std + self.mean))
      targets.append(self.representation.to_joints(features[i, :n] * self.std + self.mean))
    return preds, targets

  def reconstruct_features(self, model: MotionVAE, features: list[np.ndarray]) -> list[np.ndarray]:
    """Raw (denormalised) feature clips [T_i, C] -> their reconstructions, raw, [T_i, C] each.

    Clips are zero-padded into one batch; the VAE is causal, so padding after a clip does not
    change its frames."""
    lengths = np.array([len(f) for f in features], np.int32)
    batch = np.zeros((len(features), int(lengths.max()), features[0].shape[1]), np.float32)
    for i, f in enumerate(features):
      batch[i, :len(f)] = (np.asarray(f, np.float32) - self.mean) / self.std
    recon = np.asarray(_reconstruct(model, jnp.asarray(batch), jnp.asarray(lengths)))
    return [recon[i, :n] * self.std + self.mean for i, n in enumerate(lengths)]

  def evaluate_split(self, model: MotionVAE, split: str, *, max_len: int = 196,
                     max_batches: int | None = None) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Reconstruction metrics over a whole split, one pass, clips cropped to `max_len` frames.

    Returns (mean metrics incl. latent statistics and the MPJPE per 64-frame window of
    frame positions, where root drift shows; per-clip metrics). On the synthetic corpus
    (`data.corpus.dir` holds attribute records) also whether each reconstruction still does
    what its clip's record says (`eval/action_checks.py`): `attribute_segments`,
    `attribute_clips` and `attribute_ACTION` (share of segments passing), over the clips
    evaluated whole (not cropped by `max_len`).
    """
    eval_config = self.config.copy_and_resolve_references()
    with eval_config.unlocked():
      eval_config.data.max_len = max_len - max_len % eval_config.data.crop_multiple
      eval_config.data.shuffle = False
      eval_config.data.random_length = False
    loader = motion_pipeline.make_motion_loader(
        eval_config, split, seed=0, process_index=0, process_count=1, num_epochs=1)
    per_clip, latents, errors, recon_joints = [], [], [], {}
    for i, batch in enumerate(loader):
      if max_batches is not None and i >= max_batches:
        break
      preds, targets = self.reconstruct_joints(model, batch["features"], batch["length"])
      errors += [motion_metrics.frame_errors(p, t) for p, t in zip(preds, targets)]
      z = np.asarray(encode(model, jnp.asarray(batch["features"]), jnp.asarray(batch["length"])))
      for j, (p, t) in enumerate(zip(preds, targets)):
        per_clip.append(dict(motion_metrics.reconstruction_metrics(p, t, self.representation.fps),
                             clip_id=str(batch["clip_id"][j]), frames=len(t)))
        latents.append(z[j, :num_latents(len(t))])
        recon_joints[str(batch["clip_id"][j])] = p
    if not per_clip:
      raise ValueError(f"split {split!r} of {self.config.data.path} has no examples.")
    numeric = [k for k, v in per_clip[0].items() if isinstance(v, float)]
    summary = {k: float(np.mean([m[k] for m in per_clip])) for k in numeric}
    summary.update(motion_metrics.mpjpe_by_window_mm(errors, 64))
    summary.update(latent_statistics(latents), clips=float(len(per_clip)))
    summary.update(self._attribute_agreement(recon_joints))
    return summary, per_clip

  def _attribute_agreement(self, joints: dict[str, np.ndarray]) -> dict[str, float]:
    """Attribute accuracy of reconstructed joints {clip_id: [T,22,3]} against the corpus's
    attribute records ({} without a corpus or records); clips cut short by `max_len` are left out."""
    corpus = self.config.data.get("corpus", None)
    folder = epath.Path(corpus.dir) / "attributes" if corpus is not None else None
    if folder is None or not folder.is_dir():
      return {}
    motions, records = [], []
    for clip_id, clip in joints.items():
      path = folder / f"{clip_id}.json"
      if not path.is_file():
        continue
      record = json.loads(path.read_text())
      # The record counts joint frames, one more than feature frames; the crop to a multiple of
      # crop_multiple may drop a few more (at most crop_multiple - 1: the clip is still whole).
      cut = record.get("num_frames", len(clip) + 1) - 1 - len(clip)
      if cut >= self.config.data.crop_multiple:
        continue
      motions.append(clip)
      records.append(record)
    acc = action_checks.attribute_accuracy(motions, records, self.representation.fps) if motions else {}
    if not acc:
      return {}
    out = {"attribute_segments": acc["segments"], "attribute_clips": acc["clips"],
           "attribute_num_clips": float(acc["num_clips"])}
    out.update({f"attribute_{a}": v["accuracy"] for a, v in acc["per_action"].items()})
    return out

  def evaluate(self, model, step, writer):
    """Reconstruction metrics over `eval_batches` validation batches, and rendered examples."""
    loader = motion_pipeline.make_motion_loader(
        self.config, "val", seed=0, process_index=jax.process_index(), process_count=jax.process_count())
    per_clip = []
    for _ in range(self.config.get("eval_batches", 4)):
      batch = next(loader)
      preds, targets = self.reconstruct_joints(model, batch["features"], batch["length"])
      per_clip += [motion_metrics.reconstruction_metrics(p, t, self.representation.fps)
                   for p, t in zip(preds, targets)]
    metrics = {k: float(np.mean([m[k] for m in per_clip])) for k in per_clip[0]}
    n_render = self.config.get("eval_renders", 0)
    if n_render and jax.process_index() == 0:
      from llamo_jax.motion import stick_figure  # pylint: disable=g-import-not-at-top  (matplotlib)
      images = {f"recon_vs_gt/{i}": stick_figure.stacked_frames_image([p, t], ["reconstruction", "ground truth"])
                for i, (p, t) in enumerate(zip(preds[:n_render], targets[:n_render]))}
      writer.write_images(step, {k: v[None] for k, v in images.items()})
    return metrics


@nnx.jit
def _reconstruct(model: MotionVAE, features: jax.Array, lengths: jax.Array) -> jax.Array:
  return model.decode(model.encode(features, lengths), features.shape[1])


def latent_statistics(latents: list[np.ndarray]) -> dict[str, float]:
  """Summary of encoder latents (each [K_i, C]): scale, and how many dims carry signal."""
  z = np.concatenate(latents, axis=0)
  per_dim_std = z.std(axis=0)
  return {"latent_mean": float(z.mean()), "latent_std": float(z.std()),
          "latent_abs_max": float(np.abs(z).max()),
          "latent_active_dims": float((per_dim_std > 0.01).sum()), "latent_dims": float(z.shape[1])}


@nnx.jit
def encode(model: MotionVAE, features: jax.Array, lengths: jax.Array) -> jax.Array:
  """Jitted `model.encode`: latents [B, ceil(T/4), C] of normalised features [B, T, D] (no noise)."""
  return model.encode(features, lengths)
