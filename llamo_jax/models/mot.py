"""Mixture-of-Transformers backbone: a text and a motion expert per block.

Every block holds two `Expert`s, `layers.text` (param paths identical to the
Llama's, so a base checkpoint loads unchanged) and `layers.motion`. A token is
projected by the expert of its modality (0 text, 1 motion); attention is ONE
causal self-attention over the whole interleaved sequence (the shared
`attention.attention`, with segments, positions and the KV cache).

Routing (static shapes, each token runs one expert): per sequence, a stable
argsort of the modality puts the text tokens first and the motion tokens
after them, both in sequence order. The text expert runs on a buffer of the
first `text_capacity` sorted tokens, the motion expert on `motion_capacity`
tokens starting at the split point (number of text tokens); the results are
gathered back to sequence order by each token's rank within its modality.
Compute is (text_capacity + motion_capacity) / T of one dense expert: set the
capacities to the largest per-sequence counts of the data (`check_capacity`
verifies a batch host-side). We chose capacities per sequence (not per batch)
so routing never moves tokens across the batch-sharded axis, and gathers
(not a dense `where` over both experts) so compute tracks the token mix.
Tokens past a capacity get a zero expert output; `Routing.overflow` counts them.
A capacity of 0 skips that expert altogether: generation knows statically that
a prompt has at most one motion-expert token ([BOM]) and that a latent decode
step has only motion tokens, and passes `buffers` to run just what is needed
(a decode step then reads one expert's weights, not both).

`split` selects what is per-modality: "all" (norms, q/k/v/o and FFN: the
paper) or "ffn" (only mlp_norm + FFN; attention projections are the text
expert's for every token; the motion expert's attention params then stay unused).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.models import attention as attn_lib
from llamo_jax.models.llama import Llama, LlamaConfig, make_expert

TEXT, MOTION = 0, 1
SPLITS = ("all", "ffn")
# Per-call caps on the (text, motion) buffer sizes: None leaves one as it is, 0 skips it.
Buffers = tuple[int | None, int | None]


class Routing(NamedTuple):
  """Where each token's expert output comes from (built once per forward).

  text_idx [B,Ct], motion_idx [B,Cm]: sequence positions gathered into each
    expert's buffer (slots past the modality's count hold filler tokens).
  is_motion [B,T] bool; rank [B,T] int32: the token's slot in its buffer.
  keep [B,T] bool: False for tokens past their buffer's capacity.
  overflow [] int32: number of such tokens in the batch.
  """
  text_idx: jax.Array
  motion_idx: jax.Array
  is_motion: jax.Array
  rank: jax.Array
  keep: jax.Array
  overflow: jax.Array


def capacities(length: int, text_capacity: int | None, motion_capacity: int | None
               ) -> tuple[int, int]:
  """Buffer sizes for a sequence of `length`: None means `length`; capped at it (0 skips
  the expert)."""
  ct = length if text_capacity is None else min(text_capacity, length)
  cm = length if motion_capacity is None else min(motion_capacity, length)
  return ct, cm


def make_routing(modality: jax.Array, text_capacity: int, motion_capacity: int) -> Routing:
  """Routing for modality [B,T] int (0 text, 1 motion) and static buffer sizes."""
  is_motion = modality == MOTION
  t = modality.shape[1]
  perm = jnp.argsort(is_motion.astype(jnp.int32), axis=1, stable=True).astype(jnp.int32)
  n_text = jnp.sum(~is_motion, axis=1, dtype=jnp.int32)                        # [B]
  text_idx = perm[:, :text_capacity]
  motion_slots = jnp.minimum(n_text[:, None] + jnp.arange(motion_capacity, dtype=jnp.int32),
                             t - 1)
  motion_idx = jnp.take_along_axis(perm, motion_slots, axis=1)
  rank_m = jnp.cumsum(is_motion, axis=1, dtype=jnp.int32) - 1
  rank_t = jnp.cumsum(~is_motion, axis=1, dtype=jnp.int32) - 1
  rank = jnp.where(is_motion, rank_m, rank_t)
  keep = jnp.where(is_motion, rank < motion_capacity, rank < text_capacity)
  return Routing(text_idx, motion_idx, is_motion, rank, keep,
                 jnp.sum(~keep, dtype=jnp.int32))


def check_capacity(modality: np.ndarray, text_capacity: int | None,
                   motion_capacity: int | None) -> None:
  """Host-side check that no sequence of modality [B,T] overflows a buffer."""
  modality = np.asarray(modality)
  ct, cm = capacities(modality.shape[1], text_capacity, motion_capacity)
  n_motion = int((modality == MOTION).sum(axis=1).max())
  n_text = int((modality != MOTION).sum(axis=1).max())
  if n_motion > cm or n_text > ct:
    raise ValueError(f"A sequence has {n_text} text / {n_motion} motion tokens but the MoT "
                     f"buffers hold {ct} / {cm}; raise text_capacity / motion_capacity.")


def gather(x: jax.Array, idx: jax.Array) -> jax.Array:
  """x [B,T,...] at idx [B,C] -> [B,C,...]."""
  return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def dispatch(route: Routing, fn_text: Callable[[jax.Array], Any],
             fn_motion: Callable[[jax.Array], Any], x: jax.Array) -> Any:
  """Runs fn_text on the text tokens of x [B,T,...] and fn_motion on the motion
  tokens (each on its own buffer) and returns the outputs in sequence order."""
  cap_t, cap_m = route.text_idx.shape[1], route.motion_idx.shape[1]
  if not cap_t and not cap_m:
    raise ValueError("MoT buffers of capacity 0 for both experts: nothing would run.")
  # A buffer of capacity 0 skips its expert (its tokens get a zero output, as any overflow).
  y_text = fn_text(gather(x, route.text_idx)) if cap_t else None
  y_motion = fn_motion(gather(x, route.motion_idx)) if cap_m else None

  def combine(yt, ym):  # yt or ym is None where that expert was skipped
    ref = ym if yt is None else yt
    expand = lambda mask: mask.reshape(mask.shape + (1,) * (ref.ndim - 2))
    back = lambda y: gather(y, jnp.minimum(route.rank, y.shape[1] - 1))
    if yt is None or ym is None:  # keep is False for every token of the skipped expert
      out = back(ref)
    else:
      out = jnp.where(expand(route.is_motion), back(ym), back(yt))
    return jnp.where(expand(route.keep), out, jnp.zeros_like(out))

  if y_text is None:
    return jax.tree.map(lambda ym: combine(None, ym), y_motion)
  if y_motion is None:
    return jax.tree.map(lambda yt: combine(yt, None), y_text)
  return jax.tree.map(combine, y_text, y_motion)


class MoTBlock(nnx.Module):
  """The MoT block stack: experts "text" and "motion" (params stacked over L)."""

  def __init__(self, cfg: LlamaConfig, *, split: str = "all", rngs: nnx.Rngs):
    if split not in SPLITS:
      raise ValueError(f"MoT split={split!r} is not one of {SPLITS}.")
    self.split = split
    self.text = make_expert(cfg, rngs=rngs)
    self.motion = make_expert(cfg, rngs=rngs)

  def __call__(self, h: jax.Array, ctx: attn_lib.AttentionContext,
               layer_kv: attn_lib.LayerKV | None, route: Routing):
    """One layer on its param slice: h [B,T,D] -> (h [B,T,D], layer_kv)."""
    if self.split == "all":
      q, k, v = dispatch(route, self.text.qkv, self.motion.qkv, h)
    else:
      q, k, v = self.text.qkv(h)
    a, layer_kv = attn_lib.attention(q, k, v, ctx, layer_kv)
    if self.split == "all":
      h = h + dispatch(route, self.text.attn_out, self.motion.attn_out, a)
    else:
      h = h + self.text.attn_out(a)
    h = h + dispatch(route, self.text.ffn, self.motion.ffn, h)
    return h, layer_kv


class MoT(Llama):
  """Llama with a MoT block stack: embed -> L MoT blocks -> final norm -> LM head.

  Param paths are the Llama's plus layers.motion.* (same shapes as layers.text.*).
  Capacities are the per-sequence buffer sizes (None: the sequence length).
  """

  def __init__(self, cfg: LlamaConfig, *, split: str = "all", text_capacity: int | None = None,
               motion_capacity: int | None = None, rngs: nnx.Rngs):
    super().__init__(cfg, rngs=rngs)
    self.layers = MoTBlock(cfg, split=split, rngs=rngs)
    self.text_capacity = text_capacity
    self.motion_capacity = motion_capacity

  def routing(self, modality: jax.Array, buffers: Buffers | None = None) -> Routing:
    """Routing of modality [B,T] with this model's capacities, each capped by `buffers`
    (text, motion) where given (None: no cap; 0: skip that expert)."""
    if modality.ndim != 2:
      raise ValueError(f"modality must be [B,T], got shape {modality.shape}.")
    ct, cm = capacities(modality.shape[1], self.text_capacity, self.motion_capacity)
    if buffers is not None:
      ct, cm = (c if cap is None else min(c, cap) for c, cap in zip((ct, cm), buffers))
    return make_routing(modality, ct, cm)

  def mot_backbone(self, h: jax.Array, modality: jax.Array, positions: jax.Array | None = None,
                   segment_ids: jax.Array | None = None, cache: attn_lib.KVCache | None = None,
                   buffers: Buffers | None = None
                   ) -> tuple[jax.Array, attn_lib.KVCache | None, Routing]:
    """h [B,T,D] routed by modality [B,T] -> (final-normed h [B,T,D], cache, routing).

    `buffers` (text, motion) caps the expert buffers for this call (`routing`): a
    caller that knows how many tokens of each kind a row has at most skips the rest.
    """
    if modality.shape != h.shape[:2]:
      raise ValueError(f"modality has shape {modality.shape}; expected [B,T]={h.shape[:2]}.")
    route = self.routing(modality, buffers)
    h, cache = self.backbone(h, positions, segment_ids, cache, block_args=(route,))
    return h, cache, route

  def __call__(self, tokens: jax.Array, modality: jax.Array | None = None,
               positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
               cache: attn_lib.KVCache | None = None):
    """tokens [B,T], modality [B,T] (default all text) -> (logits [B,T,V], cache)."""
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be [B,T], got shape {tokens.shape}.")
    if modality is None:
      modality = jnp.zeros(tokens.shape, jnp.int32)
    h, cache, _ = self.mot_backbone(self.embed_tokens(tokens), modality, positions,
                                    segment_ids, cache)
    return self.logits(h), cache


def init_motion_from_text(model: nnx.Module) -> None:
  """Copies the text expert into the motion expert in place (the paper's init)."""
  layers = model.layers
  nnx.update(layers.motion, jax.tree.map(jnp.copy, nnx.state(layers.text, nnx.Param)))
