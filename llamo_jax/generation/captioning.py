"""Greedy motion captioning (motion to text) with LLaMo and a KV cache.

`caption_motion`: prefill `prefix m1..mK [EOM]` (motion left-padded so every
sequence ends at the same slot), then greedy text decoding over the base
vocabulary until eos or max_new_tokens, one jitted `lax.while_loop`.

Dimension names: B batch, K latents, C latent.
"""
from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.generation.prompts import _check_prompts
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import mot as mot_lib


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens"))
def _caption(graphdef, params, tokens, latents, modality, positions, segment_ids, eos_id,
             max_new_tokens: int) -> jax.Array:
  model = nnx.merge(graphdef, params)
  b, t = tokens.shape
  # max_new_tokens - 1 tokens are fed back at most (the last one is only predicted).
  cache, logits, _ = llamo_lib.prefill(model, tokens, latents, modality,
                                       t + max_new_tokens - 1, positions, segment_ids)
  token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  out = jnp.full((b, max_new_tokens), -1, jnp.int32).at[:, 0].set(token)
  next_position = positions[:, -1] + 1
  ones = jnp.ones((b,), jnp.int32)

  def cond(carry):
    i, _, _, done, _ = carry
    return (i < max_new_tokens) & ~jnp.all(done)

  def body(carry):
    i, cache, token, done, out = carry
    cache, logits, _ = llamo_lib.decode_step(
        model, cache, token, jnp.zeros((b, model.config.latent_dim)), 0 * ones,
        next_position + i - 1, ones)
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    out = jax.lax.dynamic_update_slice(out, jnp.where(done, -1, token)[:, None], (0, i))
    return i + 1, cache, token, done | (token == eos_id), out

  carry = (jnp.ones((), jnp.int32), cache, token, token == eos_id, out)
  return jax.lax.while_loop(cond, body, carry)[-1]


def caption_motion(model: llamo_lib.LLaMo, latents: jax.Array, lengths: jax.Array,
                   prefix: np.ndarray, *, eos_id: int, max_new_tokens: int = 40
                   ) -> list[list[int]]:
  """Greedy captions of motions, with a KV cache, in one jitted loop.

  Args:
    model: the LLaMo.
    latents: [B,K,C] normalised motion latents; sequence b uses the first lengths[b].
    lengths: [B] ints in 1..K.
    prefix: int tokens `[BOS] instruction [BOM]` (data.sequences.m2t_prompt).
    eos_id: the text token that ends a caption (not included in the output).
    max_new_tokens: most tokens per caption.

  Returns:
    B lists of text token ids (< vocab_size), without the eos.
  """
  cfg = model.config
  _check_prompts(cfg, [prefix], "prefix")
  latents = np.asarray(latents, np.float32)
  lengths = np.asarray(lengths)
  if latents.ndim != 3 or latents.shape[-1] != cfg.latent_dim:
    raise ValueError(f"latents must be [B,K,{cfg.latent_dim}], got shape {latents.shape}.")
  b, k, _ = latents.shape
  if lengths.shape != (b,) or lengths.min() < 1 or lengths.max() > k:
    raise ValueError(f"lengths must be [B]=({b},) ints in 1..K={k}, got {lengths!r}.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
  prefix = np.asarray(prefix, np.int32)
  p = prefix.size
  t = p + k + 1
  tokens = np.zeros((b, t), np.int32)
  lat = np.zeros((b, t, cfg.latent_dim), np.float32)
  modality = np.zeros((b, t), np.int32)
  positions = np.zeros((b, t), np.int32)
  segment_ids = np.zeros((b, t), np.int32)
  for i, n in enumerate(lengths.astype(int)):
    pad = k - n  # left padding: every sequence's [EOM] lands on the last slot
    tokens[i, pad:pad + p] = prefix
    lat[i, pad + p:t - 1] = latents[i, :n]
    modality[i, pad + p:t - 1] = mot_lib.MOTION
    tokens[i, t - 1] = llamo_lib.eom_id(cfg)
    positions[i, pad:] = np.arange(t - pad)
    segment_ids[i, pad:] = 1
  mot_lib.check_capacity(modality, model.text_capacity, model.motion_capacity)
  graphdef, params = nnx.split(model)
  out = np.asarray(_caption(graphdef, params, tokens, lat, modality, positions, segment_ids,
                            jnp.int32(eos_id), max_new_tokens))
  captions = []
  for row in out:
    ids = [int(x) for x in row if x >= 0]
    captions.append(ids[:ids.index(eos_id)] if eos_id in ids else ids)
  return captions
