"""Llama decoder (Llama 2/3, SmolLM2 shapes) in Flax NNX.

The block is written for Mixture-of-Transformers: its weights live in an
`Expert` ("text" here) and attention is the shared `attention.attention`, so
the MoT block adds a "motion" expert next to "text" and reuses the rest:
`make_expert`, `run_blocks` (scan/loop + remat over any stacked block),
`Llama.attention_context`, `Llama.backbone(..., block_args=(modality,))` and
the KV cache.

Param paths (nnx.state(model)); layer params always stacked with leading L:
  embed.embedding [V,D]; layers.text.{attn_norm,mlp_norm}.scale [L,D];
  layers.text.q.kernel [L,D,N,H]; layers.text.{k,v}.kernel [L,D,K,H];
  layers.text.o.kernel [L,N,H,D]; layers.text.{gate,up}.kernel [L,D,F];
  layers.text.down.kernel [L,F,D]; final_norm.scale [D];
  lm_head.kernel [D,V] (absent when tie_embeddings).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from flax import nnx
import jax
import jax.numpy as jnp

from llamo_jax.core import config_dataclass
from llamo_jax.core import sharding
from llamo_jax.models import attention as attn_lib
from llamo_jax.models.attention import KVCache, RopeScaling
from llamo_jax.models.layers import Dense, Embed, Expert, PerLayer, RMSNorm

# Logical axes of the residual stream: batch-sharded, model dim whole (the
# `embed` axis shards parameters, not activations).
ACTIVATION_AXES = ("batch", "length", None)
CACHE_AXES = ("layers", "batch", "length", "kv_heads", "head_dim")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

# Named rematerialisation policies for the scanned block ("none": no remat,
# "full": save nothing, recompute the block in the backward pass).
REMAT_POLICIES: dict[str, Callable[..., Any] | None] = {
    "none": None,
    "full": None,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable":
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig(config_dataclass.FromDict):
  """Shapes and numerics of a Llama model (hashable: a static jit argument)."""
  vocab_size: int
  dim: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  ffn_dim: int
  norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling | None = None
  tie_embeddings: bool = False
  max_seq_len: int = 2048
  dtype: str = "float32"        # compute dtype
  param_dtype: str = "float32"  # storage dtype
  scan_layers: bool = True
  remat_policy: str = "none"

  def __post_init__(self):
    if isinstance(self.rope_scaling, Mapping):
      object.__setattr__(self, "rope_scaling", _rope_scaling_from_dict(self.rope_scaling))
    if not (self.rope_scaling is None or isinstance(self.rope_scaling, RopeScaling)):
      raise ValueError("LlamaConfig.rope_scaling must be None, a RopeScaling or a dict of its "
                       f"fields, got {self.rope_scaling!r}.")
    for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                 "ffn_dim", "max_seq_len"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}.")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(f"LlamaConfig.n_heads={self.n_heads} must be a multiple of "
                       f"n_kv_heads={self.n_kv_heads}.")
    if self.head_dim % 2:
      raise ValueError(f"LlamaConfig.head_dim={self.head_dim} must be even for RoPE.")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f"LlamaConfig.{name}={getattr(self, name)!r} is not one of "
                         f"{sorted(DTYPES)}.")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"LlamaConfig.remat_policy={self.remat_policy!r} is not one of "
                       f"{sorted(REMAT_POLICIES)}.")

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  @property
  def weight_dtype(self):
    return DTYPES[self.param_dtype]


def _rope_scaling_from_dict(d: Mapping[str, Any]) -> RopeScaling:
  d = dict(d)
  rope_type = d.pop("rope_type", d.pop("type", "llama3"))
  if rope_type != "llama3":
    raise ValueError(f"rope_scaling type {rope_type!r} is not supported; only 'llama3'.")
  names = [f.name for f in dataclasses.fields(RopeScaling)]
  if sorted(d) != sorted(names):
    raise ValueError(f"rope_scaling needs exactly the keys {names} (+ optional "
                     f"rope_type='llama3'), got {sorted(d)}.")
  return RopeScaling(factor=float(d["factor"]), low_freq_factor=float(d["low_freq_factor"]),
                     high_freq_factor=float(d["high_freq_factor"]),
                     original_max_position_embeddings=int(d["original_max_position_embeddings"]))


def init_cache(cfg: LlamaConfig, batch: int, max_len: int, dtype: Any = None) -> KVCache:
  """An empty KV cache [L,B,max_len,K,H] (dtype defaults to the compute dtype)."""
  dtype = cfg.compute_dtype if dtype is None else dtype
  return attn_lib.init_cache(cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim,
                             dtype)


def run_blocks(blocks: nnx.Module, h: jax.Array, ctx: attn_lib.AttentionContext,
               cache: KVCache | None, *args: Any, scan_layers: bool,
               remat_policy: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
  """Applies a stack of blocks (params with leading L) to h [B,T,D].

  `blocks(h, ctx, layer_kv, *args) -> (h, layer_kv)` runs one layer on the
  per-layer slice of its state; `args` are passed unchanged to every layer
  (e.g. a modality mask). Layers run under lax.scan (scan_layers) or a python
  loop (also for a state of `layers.PerLayer` params), each wrapped in
  jax.checkpoint with the named remat policy.

  Returns:
    (h [B,T,D], (k, v) [L,B,S,K,H] updated cache tensors or None).
  """
  graphdef, state = nnx.split(blocks)
  kv = None if cache is None else (cache.k, cache.v)

  def body(h, xs):
    layer_state, layer_kv = xs
    block = nnx.merge(graphdef, layer_state)
    h, layer_kv = block(h, ctx, layer_kv, *args)
    return sharding.constrain(h, ACTIVATION_AXES), layer_kv

  if remat_policy != "none":
    body = jax.checkpoint(body, policy=REMAT_POLICIES[remat_policy], prevent_cse=not scan_layers)

  per_layer = lambda x: isinstance(x, PerLayer)
  first = jax.tree.leaves(state, is_leaf=per_layer)[0]
  if scan_layers and not per_layer(first):
    return jax.lax.scan(body, h, (state, kv))
  n_layers = len(first.arrays) if per_layer(first) else first.shape[0]
  layer = lambda x, i: x.arrays[i] if per_layer(x) else x[i]
  outs = []
  for i in range(n_layers):
    h, layer_kv = body(h, jax.tree.map(lambda x: layer(x, i), (state, kv), is_leaf=per_layer))
    outs.append(layer_kv)
  new_kv = None if kv is None else jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
  return h, new_kv


def make_expert(cfg: LlamaConfig, *, rngs: nnx.Rngs) -> Expert:
  """An Expert with cfg's shapes and dtypes, stacked over cfg.n_layers."""
  return Expert(dim=cfg.dim, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                head_dim=cfg.head_dim, ffn_dim=cfg.ffn_dim, norm_eps=cfg.norm_eps,
                n_layers=cfg.n_layers, rngs=rngs, dtype=cfg.compute_dtype,
                param_dtype=cfg.weight_dtype)


class LlamaBlock(nnx.Module):
  """The Llama block stack: one expert, "text" (params stacked over L)."""

  def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
    self.text = make_expert(cfg, rngs=rngs)

  def __call__(self, h: jax.Array, ctx: attn_lib.AttentionContext,
               layer_kv: attn_lib.LayerKV | None):
    """One layer on its param slice: h [B,T,D] -> (h [B,T,D], layer_kv)."""
    q, k, v = self.text.qkv(h)
    a, layer_kv = attn_lib.attention(q, k, v, ctx, layer_kv)
    h = h + self.text.attn_out(a)
    h = h + self.text.ffn(h)
    return h, layer_kv


class Llama(nnx.Module):
  """Decoder-only Llama: embed -> L blocks -> final RMSNorm -> LM head."""

  def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    dt, pdt = cfg.compute_dtype, cfg.weight_dtype
    self.embed = Embed(cfg.vocab_size, cfg.dim, rngs=rngs, dtype=dt, param_dtype=pdt)
    self.layers = LlamaBlock(cfg, rngs=rngs)
    self.final_norm = RMSNorm(cfg.dim, eps=cfg.norm_eps, dtype=dt, param_dtype=pdt)
    if not cfg.tie_embeddings:
      self.lm_head = Dense("BTD,DV->BTV", (cfg.dim, cfg.vocab_size), ("embed", "vocab"),
                           rngs=rngs, dtype=dt, param_dtype=pdt)

  def embed_tokens(self, tokens: jax.Array) -> jax.Array:
    """tokens [B,T] int32 -> embeddings [B,T,D] (compute dtype)."""
    return sharding.constrain(self.embed(tokens), ACTIVATION_AXES)

  def attention_context(self, batch: int, length: int, positions: jax.Array | None,
                        segment_ids: jax.Array | None, cache: KVCache | None):
    """Defaults positions/segment_ids and builds the shared attention context.

    Positions default to 0..T-1 (offset by the cache's end_index); segment ids
    default to one segment. Returns (ctx, new cache segment ids or None).
    """
    if positions is None:
      start = 0 if cache is None else cache.end_index
      positions = start + jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    if segment_ids is None:
      segment_ids = jnp.ones((batch, length), jnp.int32)
    for name, x in (("positions", positions), ("segment_ids", segment_ids)):
      if x.shape != (batch, length):
        raise ValueError(f"{name} has shape {x.shape}; expected [B,T]={(batch, length)}.")
    inv_freq = attn_lib.rope_inv_freq(self.cfg.head_dim, self.cfg.rope_theta,
                                      self.cfg.rope_scaling)
    return attn_lib.make_attention_context(positions, segment_ids, inv_freq, cache)

  def backbone(self, h: jax.Array, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, cache: KVCache | None = None,
               *, block_args: tuple[Any, ...] = ()) -> tuple[jax.Array, KVCache | None]:
    """Blocks + final norm: h [B,T,D] -> (normed h [B,T,D], updated cache).

    `block_args` go unchanged to every layer's block (a MoT block takes the
    per-token modality here).
    """
    b, t, _ = h.shape
    ctx, new_seg = self.attention_context(b, t, positions, segment_ids, cache)
    h = sharding.constrain(h.astype(self.cfg.compute_dtype), ACTIVATION_AXES)
    h, kv = run_blocks(self.layers, h, ctx, cache, *block_args,
                       scan_layers=self.cfg.scan_layers, remat_policy=self.cfg.remat_policy)
    if cache is not None:
      k, v = (sharding.constrain(x, CACHE_AXES) for x in kv)
      cache = KVCache(k=k, v=v, end_index=cache.end_index + t, segment_ids=new_seg)
    return self.final_norm(h), cache

  def logits(self, h: jax.Array) -> jax.Array:
    """Final hidden h [B,T,D] -> logits [B,T,V] float32."""
    if self.cfg.tie_embeddings:
      logits = self.embed.attend(h)
    else:
      logits = self.lm_head(h, out_dtype=jnp.float32)
    return sharding.constrain(logits, ("batch", "length", "vocab"))

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, cache: KVCache | None = None
               ) -> tuple[jax.Array, KVCache | None]:
    """tokens [B,T] int32 -> (logits [B,T,V] float32, updated cache or None)."""
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be [B,T], got shape {tokens.shape}.")
    h, cache = self.backbone(self.embed_tokens(tokens), positions, segment_ids, cache)
    return self.logits(h), cache
