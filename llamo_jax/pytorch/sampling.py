"""Text to motion and greedy captioning with the PyTorch LLaMo (KV cache, eager loop).

The same sampler as generation/text_to_motion.py: prefill `[BOS] caption [BOM]`
(left-padded batch; with CFG a second branch that sees only its [BOM], `prefill_branches`),
then per latent the flow head integrates its ODE from h (Euler/Heun, CFG), the latent is fed
back through one cached step and the exit head on the new conditional h ends the sequence
when sigmoid(logit) > exit_threshold and k >= min_latents. Captioning follows
generation/captioning.py (prefill `prefix m1..mK [EOM]`, greedy over the base vocab).

Noise: latent k of sequence b starts from temperature * noise[b, k]. JAX draws it as
normal(fold_in(key_b, k)); pass the same array (`text_to_motion.sampling_noise`) to
reproduce a JAX sample exactly, or a seed to draw it with torch.

Dimension names: B batch, T prompt length, K latents, C latent, D model.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from llamo_jax.pytorch import model as model_lib
from llamo_jax.pytorch._torch import torch


def left_pad(prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
  """Token lists -> (tokens, positions, segment_ids [B,T], lengths [B]), left-padded."""
  if not prompts:
    raise ValueError("Need at least one prompt.")
  lengths = [len(p) for p in prompts]
  b, t = len(prompts), max(lengths)
  tokens = torch.zeros(b, t, dtype=torch.long)
  positions = torch.zeros(b, t, dtype=torch.long)
  segment_ids = torch.zeros(b, t, dtype=torch.long)
  for i, p in enumerate(prompts):
    pad = t - len(p)
    tokens[i, pad:] = torch.as_tensor(np.asarray(p, np.int64))
    positions[i, pad:] = torch.arange(len(p))
    segment_ids[i, pad:] = 1
  return tokens, positions, segment_ids, torch.as_tensor(lengths)


def _check_prompts(cfg: model_lib.LLaMoConfig, prompts: Sequence[Sequence[int]], what: str) -> None:
  for i, p in enumerate(prompts):
    p = np.asarray(p)
    if p.ndim != 1 or p.size == 0 or p[-1] != cfg.bom_id:
      raise ValueError(f"{what} {i} must be a 1-D token list ending with [BOM] (id {cfg.bom_id}).")
    if p.size > 1 and (p[:-1].min() < 0 or p[:-1].max() >= cfg.vocab_size):
      raise ValueError(f"{what} {i} has token ids outside the base vocabulary [0, {cfg.vocab_size}).")


def prefill_branches(model: model_lib.LLaMo, tokens: torch.Tensor, positions: torch.Tensor,
                     segment_ids: torch.Tensor, guided: bool) -> tuple[model_lib.KVCache, torch.Tensor]:
  """The left-padded prompts [B,T] into a cache: (cache, h [B,D] at [BOM]); with `guided` the
  unconditional branch too (2B rows, conditional first), as text_to_motion.prefill_branches.

  The unconditional rows run their [BOM] alone: the slots before it are empty (segment 0,
  which no query of segment 1 attends), the same keys and values the branch would see if the
  whole prompt ran with its caption in a segment of its own, for one token per row.
  """
  b, t = tokens.shape
  c = model.config.latent_dim
  zeros = torch.zeros(b, t, dtype=torch.long)
  _, h, cache = model(tokens, torch.zeros(b, t, c), zeros, positions, segment_ids, model.init_cache(b))
  if not guided:
    return cache, h[:, -1]
  empty = model.init_cache(b)
  pad = torch.zeros(b, t - 1, *empty.k[0].shape[2:])
  empty = model_lib.KVCache([pad] * len(empty.k), [pad] * len(empty.v), zeros[:, 1:])
  ones = torch.ones(b, 1, dtype=torch.long)
  _, h_uncond, uncond = model(tokens[:, -1:], torch.zeros(b, 1, c), 0 * ones, positions[:, -1:], ones, empty)
  both = model_lib.KVCache([torch.cat(kv) for kv in zip(cache.k, uncond.k)],
                           [torch.cat(kv) for kv in zip(cache.v, uncond.v)],
                           torch.cat([cache.segment_ids, uncond.segment_ids]))
  return both, torch.cat([h[:, -1], h_uncond[:, -1]])


@torch.no_grad()
def generate_motion(model: model_lib.LLaMo, prompts: Sequence[Sequence[int]], *, max_latents: int,
                    cfg_scale: float | None = 4.0, flow_steps: int = 50, method: str = "euler",
                    temperature: float = 1.0, exit_threshold: float = 0.5, min_latents: int = 1,
                    noise: np.ndarray | torch.Tensor | None = None, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
  """Samples latents for prompts `[BOS] ... [BOM]` (text_to_motion.generate_motion's rule).

  noise: [B,max_latents,C] standard-normal draws (scaled by temperature); None draws them
  from torch.Generator(seed). Returns (latents [B,max_latents,C] normalised, zeros past
  each length; lengths [B]).
  """
  cfg = model.config
  _check_prompts(cfg, prompts, "Prompt")
  if not 1 <= min_latents <= max_latents:
    raise ValueError(f"need 1 <= min_latents <= max_latents, got {min_latents}, {max_latents}.")
  if method not in model_lib.METHODS or flow_steps < 1:
    raise ValueError(f"method must be one of {model_lib.METHODS} and flow_steps >= 1, got "
                     f"{method!r}, {flow_steps}.")
  b, c = len(prompts), cfg.latent_dim
  if noise is None:
    noise = torch.randn(b, max_latents, c, generator=torch.Generator().manual_seed(seed))
  noise = torch.as_tensor(np.asarray(noise, np.float32))
  if tuple(noise.shape) != (b, max_latents, c):
    raise ValueError(f"noise must be [B,max_latents,C]={(b, max_latents, c)}, got {tuple(noise.shape)}.")
  tokens, positions, segment_ids, lengths = left_pad(prompts)
  guided = cfg_scale is not None
  cache, h = prefill_branches(model, tokens, positions, segment_ids, guided)

  def sample(h, k):
    return model_lib.integrate_head(model.flow_head, h[:b], temperature * noise[:, k],
                                    h_uncond=h[b:] if guided else None,
                                    cfg_scale=1.0 if cfg_scale is None else cfg_scale,
                                    steps=flow_steps, method=method)

  out = torch.zeros(b, max_latents, c)
  z = sample(h, 0)
  out[:, 0] = z
  done = torch.zeros(b, dtype=torch.bool)
  n = torch.ones(b, dtype=torch.long)
  rep = 2 if guided else 1
  ones = torch.ones(rep * b, 1, dtype=torch.long)
  for count in range(1, max_latents):
    if bool(done.all()):
      break
    position = (lengths + count - 1).repeat(rep)[:, None]
    _, h, cache = model(0 * ones, z.repeat(rep, 1)[:, None], ones, position, ones, cache)
    h = h[:, 0]
    p_exit = torch.sigmoid(model.exit_logits(h[:b]))
    done = done | ((p_exit > exit_threshold) & (count >= min_latents))
    z = torch.where(done[:, None], torch.zeros_like(z), sample(h, count))
    out[:, count] = z
    n = n + (~done).long()
  return out, n


@torch.no_grad()
def caption_motion(model: model_lib.LLaMo, latents: torch.Tensor, lengths: Sequence[int],
                   prefix: Sequence[int], *, eos_id: int, max_new_tokens: int = 40
                   ) -> list[list[int]]:
  """Greedy captions of normalised latents [B,K,C] (first lengths[b] each) after `prefix`
  `[BOS] instruction [BOM]`; returns B lists of text ids without the eos."""
  cfg = model.config
  _check_prompts(cfg, [prefix], "prefix")
  latents = torch.as_tensor(np.asarray(latents, np.float32))
  if latents.ndim != 3 or latents.shape[-1] != cfg.latent_dim:
    raise ValueError(f"latents must be [B,K,{cfg.latent_dim}], got shape {tuple(latents.shape)}.")
  b, k, c = latents.shape
  lengths = [int(n) for n in lengths]
  if len(lengths) != b or min(lengths) < 1 or max(lengths) > k:
    raise ValueError(f"lengths must be B={b} ints in 1..K={k}, got {lengths}.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
  p = len(prefix)
  t = p + k + 1
  tokens = torch.zeros(b, t, dtype=torch.long)
  lat = torch.zeros(b, t, c)
  modality = torch.zeros(b, t, dtype=torch.long)
  positions = torch.zeros(b, t, dtype=torch.long)
  segment_ids = torch.zeros(b, t, dtype=torch.long)
  for i, n in enumerate(lengths):
    pad = k - n  # left padding: every [EOM] on the last slot
    tokens[i, pad:pad + p] = torch.as_tensor(np.asarray(prefix, np.int64))
    lat[i, pad + p:t - 1] = latents[i, :n]
    modality[i, pad + p:t - 1] = model_lib.MOTION
    tokens[i, t - 1] = cfg.eom_id
    positions[i, pad:] = torch.arange(t - pad)
    segment_ids[i, pad:] = 1
  cache = model.init_cache(b)
  logits, _, cache = model(tokens, lat, modality, positions, segment_ids, cache)
  token = logits[:, -1].argmax(-1)
  out = [[int(x)] for x in token]
  done = token == eos_id
  ones = torch.ones(b, 1, dtype=torch.long)
  for i in range(1, max_new_tokens):
    if bool(done.all()):
      break
    logits, _, cache = model(token[:, None], torch.zeros(b, 1, c), 0 * ones,
                             positions[:, -1:] + i, ones, cache)
    token = logits[:, 0].argmax(-1)
    for row in range(b):
      if not done[row]:
        out[row].append(int(token[row]))
    done = done | (token == eos_id)
  return [ids[:ids.index(eos_id)] if eos_id in ids else ids for ids in out]
