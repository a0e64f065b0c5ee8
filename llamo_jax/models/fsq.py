"""Finite scalar quantisation (FSQ, Mentzer et al. 2023, arXiv 2309.15505).

The discrete baseline of the motion VAE: each latent is projected to
len(levels) dims, every dim is squashed into a bounded range and rounded to one
of `levels[i]` values (straight-through gradient), then projected back to the
latent width. The implicit codebook is the product grid, prod(levels) codes.

Grid: with L levels and h = L // 2, a dim takes the integer values -h .. L-1-h
(L=5: -2..2; L=8: -4..3), stored normalised as integer / h, so in [-1, 1].

Dimension names: C latent, Q quantised dims (= len(levels)).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from flax import nnx

from llamo_jax.models import causal_conv
import jax
import jax.numpy as jnp

_EPS = 1e-3  # keeps the bound strictly inside the outermost rounding interval


def codebook_size(levels: Sequence[int]) -> int:
  """Number of codes of the grid, prod(levels)."""
  return math.prod(levels)


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
  """levels as a tuple of ints >= 2, or a ValueError naming the problem."""
  levels = tuple(levels)
  if not levels or any(isinstance(l, bool) or not isinstance(l, int) or l < 2 for l in levels):
    raise ValueError(f"FSQ levels must be a non-empty sequence of ints >= 2, got {levels!r}.")
  return levels


def round_ste(x: jax.Array) -> jax.Array:
  """round(x) forward, identity gradient backward (straight-through estimator)."""
  return x + jax.lax.stop_gradient(jnp.round(x) - x)


def bound(z: jax.Array, levels: Sequence[int]) -> jax.Array:
  """Squashes z [...,Q] so that rounding dim i gives exactly levels[i] integers."""
  lv = jnp.asarray(levels, jnp.float32)
  half_l = (lv - 1.0) * (1.0 + _EPS) / 2.0
  offset = jnp.where(jnp.asarray(levels) % 2 == 0, 0.5, 0.0)
  shift = jnp.arctanh(offset / half_l)  # so that bound(0) == 0
  return (jnp.tanh(z.astype(jnp.float32) + shift) * half_l - offset).astype(z.dtype)


def quantize(z: jax.Array, levels: Sequence[int]) -> jax.Array:
  """z [...,Q] -> normalised grid codes [...,Q] in [-1,1] (straight-through rounding)."""
  half_width = jnp.asarray([l // 2 for l in levels], z.dtype)
  return round_ste(bound(z, levels)) / half_width


def codes_to_indices(codes: jax.Array, levels: Sequence[int]) -> jax.Array:
  """Normalised grid codes [...,Q] -> flat code indices [...] int32 in [0, prod(levels))."""
  half_width = jnp.asarray([l // 2 for l in levels], jnp.float32)
  digits = jnp.round(codes.astype(jnp.float32) * half_width + half_width).astype(jnp.int32)
  basis = jnp.asarray([math.prod(levels[:i]) for i in range(len(levels))], jnp.int32)
  return jnp.sum(digits * basis, axis=-1)


def indices_to_codes(indices: jax.Array, levels: Sequence[int]) -> jax.Array:
  """Flat code indices [...] -> normalised grid codes [...,Q] float32 (codes_to_indices^-1)."""
  basis = jnp.asarray([math.prod(levels[:i]) for i in range(len(levels))], jnp.int32)
  lv = jnp.asarray(levels, jnp.int32)
  digits = (indices[..., None].astype(jnp.int32) // basis) % lv
  half_width = jnp.asarray([l // 2 for l in levels], jnp.float32)
  return (digits.astype(jnp.float32) - half_width) / half_width


class FSQ(nnx.Module):
  """Latent [...,C] -> project to Q = len(levels) dims -> quantise -> project back to [...,C].

  Params: project_in.kernel [C,Q], project_in.bias [Q], project_out.kernel [Q,C],
  project_out.bias [C].
  """

  def __init__(self, latent_dim: int, levels: Sequence[int], *, rngs: nnx.Rngs,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32):
    self.levels = check_levels(levels)
    q = len(self.levels)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_metadata=causal_conv.REPLICATED(2),
              bias_metadata=causal_conv.REPLICATED(1))
    self.project_in = nnx.Linear(latent_dim, q, **kw)
    self.project_out = nnx.Linear(q, latent_dim, **kw)

  @property
  def codebook_size(self) -> int:
    return codebook_size(self.levels)

  def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """z [...,C] -> (quantised latent [...,C], code indices [...] int32)."""
    codes = quantize(self.project_in(z), self.levels)
    return self.project_out(codes), codes_to_indices(codes, self.levels)

  def from_indices(self, indices: jax.Array) -> jax.Array:
    """Code indices [...] int -> quantised latent [...,C] (what the decoder reads)."""
    return self.project_out(indices_to_codes(indices, self.levels))
