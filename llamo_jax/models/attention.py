"""Shared causal self-attention: RoPE, grouped-query attention, masks, KV cache.

One attention function serves every block. It takes q/k/v that the caller has
already projected, so a Mixture-of-Transformers block can project each token
with the expert of its modality and still attend over the whole interleaved
sequence with this same function.

Dimension names: B batch, T query length, S key length (cache size), N query
heads, K kv heads, H head dim.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3 RoPE frequency scaling (transformers' rope_type="llama3")."""
  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int

  def __post_init__(self):
    if self.factor <= 0 or self.low_freq_factor <= 0:
      raise ValueError(f"RopeScaling factors must be positive, got {self}.")
    if self.high_freq_factor <= self.low_freq_factor:
      raise ValueError("RopeScaling needs high_freq_factor > low_freq_factor, "
                       f"got {self}.")


def rope_inv_freq(head_dim: int, theta: float,
                  scaling: RopeScaling | None = None) -> np.ndarray:
  """Inverse rotary frequencies [H/2] (float32), with optional Llama-3 scaling.

  Frequencies with wavelength above original_max/low_freq_factor are divided
  by `factor`; those below original_max/high_freq_factor are kept; the band
  between is interpolated smoothly (transformers' _compute_llama3_parameters).
  """
  if head_dim % 2:
    raise ValueError(f"RoPE needs an even head_dim, got {head_dim}.")
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if scaling is not None:
    old_len = scaling.original_max_position_embeddings
    low_freq_wavelen = old_len / scaling.low_freq_factor
    high_freq_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = ((old_len / wavelen - scaling.low_freq_factor)
              / (scaling.high_freq_factor - scaling.low_freq_factor))
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    inv_freq = np.where(is_medium, smoothed, scaled)
  return inv_freq.astype(np.float32)


def rope_tables(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """sin, cos tables [B,T,H] (float32) for integer positions [B,T].

  Layout follows HF's rotate_half convention: the H/2 frequencies repeated
  twice, so dims i and i+H/2 form one rotating pair.
  """
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.sin(emb), jnp.cos(emb)


def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
  """Rotates x [B,T,heads,H] by the tables [B,T,H]; computed in float32."""
  dtype = x.dtype
  x = x.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  out = x * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(dtype)


class KVCache(NamedTuple):
  """Functional KV cache of a whole stack of layers (a pytree).

  k, v: [L,B,S,K,H] keys (already rotated) and values.
  end_index: [] int32, number of slots written so far (shared by the batch;
    give shorter prompts left padding with their own segment id).
  segment_ids: [B,S] int32 segment id of each written slot, so a query only
    sees keys of its own segment (e.g. padding stays invisible).

  Writing past max_len cannot raise inside jit (the write would be clamped):
  callers size the cache for prompt + generated tokens up front.
  """
  k: jax.Array
  v: jax.Array
  end_index: jax.Array
  segment_ids: jax.Array

  @property
  def max_len(self) -> int:
    return self.k.shape[2]


def init_cache(n_layers: int, batch: int, max_len: int, n_kv_heads: int,
               head_dim: int, dtype) -> KVCache:
  """An empty cache for `max_len` tokens."""
  shape = (n_layers, batch, max_len, n_kv_heads, head_dim)
  return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                 end_index=jnp.zeros((), jnp.int32),
                 segment_ids=jnp.zeros((batch, max_len), jnp.int32))


class AttentionContext(NamedTuple):
  """Per-forward attention inputs shared by all layers (built once).

  sin, cos: [B,T,H] RoPE tables of the query tokens.
  mask: [B,1,T,S] bool, True where query t may attend key s.
  end_index: [] int32 cache slot of the first query token; None without cache.
  """
  sin: jax.Array
  cos: jax.Array
  mask: jax.Array
  end_index: jax.Array | None


def make_attention_context(
    positions: jax.Array, segment_ids: jax.Array, inv_freq: np.ndarray,
    cache: KVCache | None = None,
) -> tuple[AttentionContext, jax.Array | None]:
  """Builds the shared context for queries at positions/segment_ids [B,T].

  Causality follows token order (cache slot order), not `positions`, which
  only set the RoPE angle. A query attends only keys with its segment id.

  Returns:
    (context, new cache segment_ids [B,S] or None without cache).
  """
  sin, cos = rope_tables(positions, inv_freq)
  t = positions.shape[1]
  if cache is None:
    q_slot = jnp.arange(t)
    k_slot = q_slot
    k_seg = segment_ids
    end_index, new_seg = None, None
  else:
    if t > cache.max_len:
      raise ValueError(f"{t} new tokens do not fit a KV cache of {cache.max_len} slots; "
                       "init_cache with a larger max_len.")
    end_index = cache.end_index
    new_seg = jax.lax.dynamic_update_slice(
        cache.segment_ids, segment_ids.astype(jnp.int32), (0, end_index))
    q_slot = end_index + jnp.arange(t)
    k_slot = jnp.arange(cache.max_len)
    k_seg = new_seg
  causal = k_slot[None, :] <= q_slot[:, None]                        # [T,S]
  same_segment = segment_ids[:, :, None] == k_seg[:, None, :]        # [B,T,S]
  mask = (causal[None] & same_segment)[:, None]                      # [B,1,T,S]
  return AttentionContext(sin, cos, mask, end_index), new_seg


LayerKV = tuple[jax.Array, jax.Array]


def attention(q: jax.Array, k: jax.Array, v: jax.Array, ctx: AttentionContext,
              layer_kv: LayerKV | None = None) -> tuple[jax.Array, LayerKV | None]:
  """Causal (segment-masked) GQA over q [B,T,N,H], k/v [B,T,K,H].

  With `layer_kv` (this layer's cache slices k, v [B,S,K,H]) the new keys and
  values are written at ctx.end_index and the queries attend the whole cache.

  Returns:
    (out [B,T,N,H] in q's dtype, updated layer_kv or None).
  """
  q = apply_rope(q, ctx.sin, ctx.cos)
  k = apply_rope(k, ctx.sin, ctx.cos)
  if layer_kv is not None:
    k_cache, v_cache = layer_kv
    start = (0, ctx.end_index, 0, 0)
    k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), start)
    v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), start)
    layer_kv = (k_cache, v_cache)
    k, v = k_cache.astype(q.dtype), v_cache.astype(q.dtype)
  out = jax.nn.dot_product_attention(q, k, v.astype(q.dtype), mask=ctx.mask)
  return out, layer_kv
