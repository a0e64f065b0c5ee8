"""Optimizers from the config: AdamW, warmup + cosine, clipping, per-module learning rates.

Config (`config.optimizer`):
  lr: peak learning rate.            warmup_steps: linear warmup from 0.
  decay_steps: cosine length (default: the run's total steps, 0 = constant after warmup).
  end_lr_frac: final lr as a fraction of the peak.
  b1, b2, eps, weight_decay, grad_clip (global norm; 0 = off).
  lr_multipliers: optional {module-path regex: multiplier} for per-module learning rates;
    the first matching pattern wins, unmatched parameters use 1.0.

Weight decay skips 1-D parameters (norm scales, biases). Only the trainable
parameters ever reach the optimizer, so frozen modules carry no optimizer state.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import ml_collections
import optax


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup to `cfg.lr`, then cosine decay to `cfg.lr * cfg.end_lr_frac`."""
  warmup = int(cfg.get("warmup_steps", 0))
  decay_steps = cfg.get("decay_steps", None)
  decay_steps = total_steps - warmup if decay_steps is None else int(decay_steps)
  end_lr = cfg.lr * cfg.get("end_lr_frac", 0.0)
  if decay_steps <= 0:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)), optax.constant_schedule(cfg.lr)], [warmup])
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=warmup,
      decay_steps=warmup + decay_steps, end_value=end_lr)


def _path_str(path: tuple[Any, ...]) -> str:
  parts = []
  for p in path:
    key = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
    parts.append(str(key))
  return ".".join(parts)


def _multiplier_labels(params: Any, patterns: Mapping[str, float]) -> Any:
  compiled = [(re.compile(pattern), pattern) for pattern in patterns]

  def label(path, _):
    name = _path_str(path)
    for regex, pattern in compiled:
      if regex.search(name):
        return pattern
    return "__default__"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int, params: Any
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimizer for `params` (a pytree of trainable arrays/nnx.State).

  Returns (transformation, schedule); the schedule is exposed so the trainer can log the lr.
  """
  name = cfg.get("name", "adamw")
  if name != "adamw":
    raise ValueError(f"config.optimizer.name={name!r} is not supported; use 'adamw'.")
  schedule = learning_rate_schedule(cfg, total_steps)

  def adamw(lr):
    return optax.adamw(
        lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.95), eps=cfg.get("eps", 1e-8),
        weight_decay=cfg.get("weight_decay", 0.0),
        mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))

  multipliers = dict(cfg.get("lr_multipliers", None) or {})
  if multipliers:
    transforms = {pattern: adamw(lambda step, m=m: schedule(step) * m) for pattern, m in multipliers.items()}
    transforms["__default__"] = adamw(schedule)
    tx = optax.multi_transform(transforms, _multiplier_labels(params, multipliers))
  else:
    tx = adamw(schedule)
  clip = cfg.get("grad_clip", 0.0)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, schedule
