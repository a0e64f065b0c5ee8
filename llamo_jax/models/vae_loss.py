"""Training loss of the causal motion VAE.

  loss = w_recon * recon + w_root * root + w_kl * kl + w_joints * joints
         + w_joint_vel * joint_vel

  recon  elementwise smooth L1 (beta 1, as the T2M-GPT family of motion VQ-VAEs),
         L1 or L2 between decoded and target normalised features, mean over valid
         frames and feature dims. Smooth L1 is quadratic below one standard
         deviation, so small errors (a hand a few cm off) get little gradient;
         L1 weighs them as much as large ones. (MotionStreamer itself uses the sigma-VAE
         optimal-sigma Gaussian NLL; not offered here.)
  root   the same on the root dims only (hml263: dims 0:4, yaw velocity, xz
         velocity, height; mm272: dims 0:8, xz velocity + 6D heading change),
         weighted 7 by default as MotionStreamer does: root errors integrate
         into trajectory drift.
  kl     0.5 * mean(mu^2) over valid latents. With a fixed posterior sigma,
         KL(N(mu, sigma^2) || N(0, 1)) = 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)
         per dim, and the sigma terms are constants: the KL reduces to
         0.5 * mu^2 up to a constant. FSQ models (out.indices is not None) have
         no KL term (reported as 0).
  joints mean |joints(pred) - joints(target)| (L1, metres) over valid frames,
         22 joints and xyz, after denormalising with the dataset mean/std and
         the representation's differentiable features -> joints path.
  joint_vel  mean |dpred - dtarget| (L1, metres per frame) of the same joints'
         frame-to-frame displacement, over pairs of valid frames: fast limb
         motion (a clap, a kick) is a small share of the positions but most of
         the velocity. Needs the joint path (w_joints or w_joint_vel > 0).

A latent is valid when any of its 4 frames is valid. Metrics: every term,
the total, and `mpjpe_mm` (mean joint position error in mm, not differentiated).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.core import config_dataclass
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT, VAEOutput
from llamo_jax.motion import representation as representation_lib

RECON_KINDS = ("smooth_l1", "l1", "l2")


@dataclasses.dataclass(frozen=True)
class VAELossConfig(config_dataclass.FromDict):
  """Weights and kinds of the VAE loss terms (hashable)."""
  representation: str = "hml263"  # "hml263" | "mm272": root dims and features -> joints
  recon: str = "smooth_l1"        # "smooth_l1" | "l1" | "l2", on normalised features
  w_recon: float = 1.0
  w_root: float = 7.0
  w_kl: float = 1e-4
  w_joints: float = 1.0           # 0 disables the joint term (no mean/std needed then)
  w_joint_vel: float = 0.0        # the joints' frame-to-frame displacement (L1)

  def __post_init__(self):
    if self.representation not in representation_lib.NAMES:
      raise ValueError(f"VAELossConfig.representation={self.representation!r} is not one of "
                       f"{sorted(representation_lib.NAMES)}.")
    if self.recon not in RECON_KINDS:
      raise ValueError(f"VAELossConfig.recon={self.recon!r} is not one of {RECON_KINDS}.")
    for name in ("w_recon", "w_root", "w_kl", "w_joints", "w_joint_vel"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"VAELossConfig.{name} must be a float >= 0, got {value!r}.")


def _elementwise(kind: str, pred: jax.Array, target: jax.Array) -> jax.Array:
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == "l2":
    return diff * diff
  if kind == "l1":
    return jnp.abs(diff)
  a = jnp.abs(diff)  # smooth L1 with beta = 1 (PyTorch SmoothL1Loss's default)
  return jnp.where(a < 1.0, 0.5 * diff * diff, a - 0.5)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of x [B,T,...] over the positions where mask [B,T] is true (0 if none)."""
  m = mask.astype(jnp.float32).reshape(mask.shape + (1,) * (x.ndim - 2))
  per_position = int(np.prod(x.shape[2:]))
  return jnp.sum(x * m) / jnp.maximum(jnp.sum(m) * per_position, 1.0)


def latent_mask(mask: jax.Array, num_latents: int) -> jax.Array:
  """Frame mask [B,T] -> latent mask [B,K]: latent k is valid when any of frames 4k..4k+3 is."""
  b, t = mask.shape
  pad = num_latents * FRAMES_PER_LATENT - t
  if pad < 0:
    raise ValueError(f"{num_latents} latents cover {num_latents * FRAMES_PER_LATENT} frames, "
                     f"fewer than the mask's {t}.")
  m = jnp.pad(mask.astype(bool), ((0, 0), (0, pad)))
  return m.reshape(b, num_latents, FRAMES_PER_LATENT).any(axis=-1)


class VAELoss:
  """The VAE loss for one representation; build once, call under jit.

  Args:
    cfg: term weights and kinds.
    feature_mean, feature_std: [Cin] dataset statistics that normalised the
      features (needed when cfg.w_joints > 0, to recover joints).
    to_joints: features [...,T,Cin] (denormalised) -> joints [...,T,22,3],
      differentiable; defaults to the representation's `to_joints_jax`.
  """

  def __init__(self, cfg: VAELossConfig, feature_mean: Any = None, feature_std: Any = None, *,
               to_joints: Callable[[jax.Array], jax.Array] | None = None):
    self.cfg = cfg
    rep = representation_lib.get_representation(cfg.representation)
    self.dim = rep.dim
    self.root_dims = rep.root_dims
    self.to_joints = None
    if cfg.w_joints > 0 or cfg.w_joint_vel > 0:
      if feature_mean is None or feature_std is None:
        raise ValueError("VAELossConfig.w_joints or w_joint_vel > 0 needs the dataset feature_mean "
                         "and feature_std (to denormalise before features -> joints); pass them or "
                         "set both to 0.")
      self.feature_mean = jnp.asarray(feature_mean, jnp.float32)
      self.feature_std = jnp.asarray(feature_std, jnp.float32)
      for name, value in (("feature_mean", self.feature_mean), ("feature_std", self.feature_std)):
        if value.shape != (self.dim,):
          raise ValueError(f"VAELoss: {name} has shape {value.shape}, but representation "
                           f"{cfg.representation!r} has {self.dim} dims.")
        if not np.all(np.isfinite(np.asarray(value))):
          raise ValueError(f"VAELoss: {name} contains NaN/inf; recompute the dataset statistics.")
      if to_joints is None:
        to_joints = rep.to_joints_jax
      self.to_joints = to_joints

  def __call__(self, out: VAEOutput, target: jax.Array, mask: jax.Array
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """out: the model's VAEOutput (recon [B,T,Cin]); target [B,T,Cin] normalised; mask [B,T].

    Returns (scalar loss, metrics dict of scalars).
    """
    cfg = self.cfg
    if target.shape[-1] != self.dim or out.recon.shape != target.shape:
      raise ValueError(f"VAELoss({cfg.representation!r}): recon {out.recon.shape} and target "
                       f"{target.shape} must both be [B,T,{self.dim}].")
    if mask.shape != target.shape[:2]:
      raise ValueError(f"VAELoss: mask {mask.shape} must be [B,T] = {target.shape[:2]}.")
    err = _elementwise(cfg.recon, out.recon, target)
    recon = _masked_mean(err, mask)
    root = _masked_mean(err[..., :self.root_dims], mask)
    if out.indices is None:
      kl = 0.5 * _masked_mean(jnp.square(out.mean.astype(jnp.float32)),
                              latent_mask(mask, out.mean.shape[1]))
    else:
      kl = jnp.zeros((), jnp.float32)
    metrics = {"recon": recon, "root": root, "kl": kl}
    loss = cfg.w_recon * recon + cfg.w_root * root + cfg.w_kl * kl
    if self.to_joints is not None:
      pred_j = self.to_joints(out.recon.astype(jnp.float32) * self.feature_std + self.feature_mean)
      true_j = self.to_joints(target.astype(jnp.float32) * self.feature_std + self.feature_mean)
      diff = pred_j - true_j
      joints = _masked_mean(jnp.abs(diff), mask)
      dist = jnp.sqrt(jnp.sum(jax.lax.stop_gradient(diff) ** 2, axis=-1))
      metrics["joints"] = joints
      metrics["mpjpe_mm"] = 1000.0 * _masked_mean(dist, mask)
      loss = loss + cfg.w_joints * joints
      if cfg.w_joint_vel > 0:
        valid = mask.astype(bool)
        pairs = valid[:, 1:] & valid[:, :-1]
        vel_diff = (pred_j[:, 1:] - pred_j[:, :-1]) - (true_j[:, 1:] - true_j[:, :-1])
        metrics["joint_vel"] = _masked_mean(jnp.abs(vel_diff), pairs)
        loss = loss + cfg.w_joint_vel * metrics["joint_vel"]
    metrics["loss"] = loss
    return loss, metrics
