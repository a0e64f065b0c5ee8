"""Host-side inputs of generation: left-padded prompt batches, prompt checks, per-sequence keys.

Batches of prompts of different lengths are LEFT-padded (segment id 0, which
no real token attends to), so all prompts end at the same cache slot; RoPE
positions start at 0 at each prompt's first real token.

Random numbers are per sequence: `rng` is one key (split into B keys) or B
keys (`sequence_keys`), so a prompt's sample does not depend on its batch
neighbours.

Dimension names: B batch, T prompt length.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.models import llamo as llamo_lib

class PromptBatch(NamedTuple):
  """Left-padded prompts (numpy, all [B,T]).

  tokens int32 (0 at padding); positions int32 (0 at the first real token and
  at padding); segment_ids int32 (1 real, 0 padding); lengths [B] int32 real
  tokens per prompt.
  """
  tokens: np.ndarray
  positions: np.ndarray
  segment_ids: np.ndarray
  lengths: np.ndarray


def left_pad(prompts: Sequence[np.ndarray]) -> PromptBatch:
  """Stacks 1-D token arrays into a left-padded PromptBatch."""
  if not prompts:
    raise ValueError("Need at least one prompt.")
  arrays = [np.asarray(p) for p in prompts]
  for i, p in enumerate(arrays):
    if p.ndim != 1 or p.size == 0 or not np.issubdtype(p.dtype, np.integer):
      raise ValueError(f"Prompt {i} must be a non-empty 1-D integer token array, got "
                       f"dtype {p.dtype} shape {p.shape}.")
  lengths = np.array([p.size for p in arrays], np.int32)
  b, t = len(arrays), int(lengths.max())
  tokens = np.zeros((b, t), np.int32)
  positions = np.zeros((b, t), np.int32)
  segment_ids = np.zeros((b, t), np.int32)
  for i, p in enumerate(arrays):
    pad = t - p.size
    tokens[i, pad:] = p
    positions[i, pad:] = np.arange(p.size)
    segment_ids[i, pad:] = 1
  return PromptBatch(tokens, positions, segment_ids, lengths)


def _check_prompts(cfg: llamo_lib.LLaMoConfig, prompts: Sequence[np.ndarray], what: str) -> None:
  """Each prompt must be base-vocabulary text ending with [BOM]."""
  bom, v = llamo_lib.bom_id(cfg), cfg.llama.vocab_size
  for i, p in enumerate(prompts):
    p = np.asarray(p)
    if p.ndim != 1 or p.size == 0 or p[-1] != bom:
      raise ValueError(f"{what} {i} must be a 1-D token array ending with [BOM] (id {bom}), "
                       f"e.g. data.sequences.t2m_prompt(...); got {p!r}.")
    body = p[:-1]
    if body.size and (body.min() < 0 or body.max() >= v):
      raise ValueError(f"{what} {i} has token ids outside the base vocabulary [0, {v}) before "
                       "its final [BOM]; is the tokenizer the model's?")


def sequence_keys(rng: jax.Array, batch: int) -> jax.Array:
  """Per-sequence typed keys [B]: `rng` split B ways if it is one key, kept if it is B keys."""
  rng = jnp.asarray(rng)
  if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    if rng.dtype != jnp.uint32 or rng.shape[-1:] != (2,):
      raise ValueError(f"rng must be a jax.random.key or raw PRNGKey data, got dtype "
                       f"{rng.dtype} shape {rng.shape}.")
    rng = jax.random.wrap_key_data(rng)
  if rng.shape == ():
    return jax.random.split(rng, batch)
  if rng.shape == (batch,):
    return rng
  raise ValueError(f"rng must be one key or one key per prompt ({batch}), got key shape "
                   f"{rng.shape}.")
