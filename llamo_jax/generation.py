"""KV-cached text-to-motion and motion captioning with LLaMo, and streaming generation.

Text to motion (`generate_motion`): prefill `[BOS] caption [BOM]`, then per
latent: the flow head integrates its ODE from the hidden state h (classifier-
free guidance against an unconditional branch) to the next latent, that latent
is fed back through one cached decode step, and the exit head on the new h says
whether the motion ends there. The whole loop is one jitted `lax.while_loop`
with the KV cache in its carry; it stops early once every sequence has exited.

Unconditional branch: the same prompt with every token before the final [BOM]
moved to a segment of its own (segment id -1), exactly how `LLaMo.loss` drops
captions in training, so [BOM] and the motion tokens see no condition. Both
branches run as one batch of 2B; positions are identical in both.

Batches of prompts of different lengths are LEFT-padded (segment id 0, which
no real token attends to), so all prompts end at the same cache slot; RoPE
positions start at 0 at each prompt's first real token. Random numbers are per
sequence: `rng` is one key (split into B keys) or B keys, and latent k of
sequence b starts from the noise `temperature * N(0,I)` drawn with
`fold_in(key_b, k)`, so a prompt's sample does not depend on its batch
neighbours or on whether it was streamed.

Exit rule: after latent k (1-based) is fed, the sequence ends with length k
when sigmoid(exit logit of the conditional h) > exit_threshold and
k >= min_latents; a finished sequence stops changing (its later latents are 0).

Motion to text (`caption_motion`): prefill `prefix m1..mK [EOM]` (motion
left-padded so every sequence ends at the same slot), then greedy text decoding
over the base vocabulary until eos or max_new_tokens, also one jitted loop.

Streaming (`stream_motion`): the same steps as separately jitted functions
(prefill + first latent, one decode+exit+sample step, one VAE `decode_step`),
yielding 4 new feature frames per latent as soon as it exists.

Latents are in the normalised latent space the model was trained in;
`decode_latents` denormalises them with the latent statistics for the VAE.

Dimension names: B batch, T prompt length, K latents, C latent, D model, V vocab.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, NamedTuple, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import mot as mot_lib
from llamo_jax.models import motion_vae as vae_lib
from llamo_jax.models.attention import KVCache

DEFAULT_CFG_SCALE = 4.0  # our default (the paper's value is not known); tune on validation
UNCOND_SEGMENT = -1      # segment of the dropped condition in the unconditional branch


# ------------------------------------------------------------------ host-side inputs

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


# ------------------------------------------------------------------ traced steps

@dataclasses.dataclass(frozen=True)
class _Static:
  """Shape-/control-flow-defining settings (jit static)."""
  max_latents: int
  guided: bool
  flow_steps: int
  method: str


class _Knobs(NamedTuple):
  """Scalar settings traced as data (changing them does not recompile)."""
  cfg_scale: jax.Array
  temperature: jax.Array
  exit_threshold: jax.Array
  min_latents: jax.Array


class MotionState(NamedTuple):
  """Carry of the generation loop (one step = one latent).

  cache: KV cache of both branches (2B rows with CFG: conditional first).
  latent [B,C]: the latest sampled latent (0 where the sequence is done).
  done [B] bool; lengths [B] int32 latents so far per sequence.
  count [] int32: latents sampled so far (the loop step).
  """
  cache: KVCache
  latent: jax.Array
  done: jax.Array
  lengths: jax.Array
  count: jax.Array


def _sample(model: llamo_lib.LLaMo, h: jax.Array, keys: jax.Array, count: jax.Array,
            knobs: _Knobs, static: _Static) -> jax.Array:
  """Latent number `count` [B,C] from h [B,D] (or [2B,D] cond|uncond with CFG)."""
  b = keys.shape[0]
  h = h.astype(jnp.float32)
  c = model.config.latent_dim
  step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, count)
  x0 = knobs.temperature * jax.vmap(lambda k: jax.random.normal(k, (c,)))(step_keys)
  return flow_lib.integrate_head(model.flow_head, h[:b], x0, h_uncond=h[b:] if static.guided else None,
                                 cfg_scale=knobs.cfg_scale, steps=static.flow_steps, method=static.method)


def _start(model: llamo_lib.LLaMo, prompt: PromptBatch, keys: jax.Array, knobs: _Knobs,
           static: _Static) -> MotionState:
  """Prefill (both branches) and the first latent."""
  tokens, positions, segment_ids = prompt.tokens, prompt.positions, prompt.segment_ids
  if static.guided:
    # Everything before the final [BOM] (the last slot) is the condition.
    is_cond = (segment_ids > 0).at[:, -1].set(False)
    uncond = jnp.where(is_cond, UNCOND_SEGMENT, segment_ids)
    tokens = jnp.concatenate([tokens, tokens])
    positions = jnp.concatenate([positions, positions])
    segment_ids = jnp.concatenate([segment_ids, uncond])
  rows, t = tokens.shape
  zeros = jnp.zeros((rows, t), jnp.int32)
  # max_latents - 1 latents are fed back at most (the last one is only sampled).
  cache, _, h = llamo_lib.prefill(model, tokens, jnp.zeros((rows, t, model.config.latent_dim)),
                                  zeros, t + static.max_latents - 1, positions, segment_ids)
  b = keys.shape[0]
  z = _sample(model, h, keys, jnp.int32(0), knobs, static)
  return MotionState(cache, z, jnp.zeros((b,), bool), jnp.ones((b,), jnp.int32),
                     jnp.ones((), jnp.int32))


def _advance(model: llamo_lib.LLaMo, state: MotionState, prompt_lengths: jax.Array,
             keys: jax.Array, knobs: _Knobs, static: _Static) -> MotionState:
  """Feeds the latest latent, applies the exit rule, samples the next latent."""
  b = keys.shape[0]
  rep = 2 if static.guided else 1
  # Latent k (1-based) sits at position len + k - 1 ([BOM] is at len - 1).
  position = jnp.tile(prompt_lengths + state.count - 1, rep)
  ones = jnp.ones((rep * b,), jnp.int32)
  cache, _, h = llamo_lib.decode_step(model, state.cache, 0 * ones,
                                      jnp.tile(state.latent, (rep, 1)), ones, position, ones)
  p_exit = jax.nn.sigmoid(model.exit_logits(h[:b].astype(jnp.float32)))
  done = state.done | ((p_exit > knobs.exit_threshold) & (state.count >= knobs.min_latents))
  z = jnp.where(done[:, None], 0.0, _sample(model, h, keys, state.count, knobs, static))
  return MotionState(cache, z, done, state.lengths + (~done).astype(jnp.int32), state.count + 1)


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _generate(graphdef: nnx.GraphDef, params: nnx.State, prompt: PromptBatch, keys: jax.Array,
              knobs: _Knobs, static: _Static) -> tuple[jax.Array, jax.Array]:
  model = nnx.merge(graphdef, params)
  state = _start(model, prompt, keys, knobs, static)
  latents = jnp.zeros((keys.shape[0], static.max_latents, model.config.latent_dim), jnp.float32)
  latents = latents.at[:, 0].set(state.latent)

  def cond(carry):
    state, _ = carry
    return (state.count < static.max_latents) & ~jnp.all(state.done)

  def body(carry):
    state, latents = carry
    state = _advance(model, state, prompt.lengths, keys, knobs, static)
    latents = jax.lax.dynamic_update_slice(latents, state.latent[:, None],
                                           (0, state.count - 1, 0))
    return state, latents

  state, latents = jax.lax.while_loop(cond, body, (state, latents))
  return latents, state.lengths


# ------------------------------------------------------------------ text to motion

def _motion_settings(model: llamo_lib.LLaMo, prompts: Sequence[np.ndarray], *,
                     max_latents: int, cfg_scale: float | None, flow_steps: int, method: str,
                     temperature: float, exit_threshold: float, min_latents: int
                     ) -> tuple[PromptBatch, _Knobs, _Static]:
  """Validates the arguments and builds the padded prompt batch."""
  if not isinstance(model, llamo_lib.LLaMo):
    raise ValueError(f"model must be a LLaMo, got {type(model).__name__}.")
  _check_prompts(model.config, prompts, "Prompt")
  if max_latents < 1:
    raise ValueError(f"max_latents must be >= 1, got {max_latents}.")
  if not 1 <= min_latents <= max_latents:
    raise ValueError(f"min_latents must be in 1..max_latents={max_latents}, got {min_latents}.")
  if method not in flow_lib.METHODS:
    raise ValueError(f"ODE method {method!r} is not one of {flow_lib.METHODS}.")
  if flow_steps < 1:
    raise ValueError(f"flow_steps must be >= 1, got {flow_steps}.")
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature}.")
  if not 0.0 <= exit_threshold <= 1.0:
    raise ValueError(f"exit_threshold is a probability in [0,1], got {exit_threshold}.")
  batch = left_pad(prompts)
  mot_lib.check_capacity(np.zeros_like(batch.tokens), model.text_capacity, model.motion_capacity)
  knobs = _Knobs(jnp.float32(1.0 if cfg_scale is None else cfg_scale), jnp.float32(temperature),
                 jnp.float32(exit_threshold), jnp.int32(min_latents))
  static = _Static(max_latents, cfg_scale is not None, flow_steps, method)
  return batch, knobs, static


def generate_motion(model: llamo_lib.LLaMo, prompts: Sequence[np.ndarray], rng: jax.Array, *,
                    max_latents: int, cfg_scale: float | None = DEFAULT_CFG_SCALE,
                    flow_steps: int = 50, method: str = "euler", temperature: float = 1.0,
                    exit_threshold: float = 0.5, min_latents: int = 1
                    ) -> tuple[jax.Array, jax.Array]:
  """Samples motion latents for text prompts, with a KV cache, in one jitted loop.

  Args:
    model: the LLaMo.
    prompts: B int token arrays `[BOS] ... [BOM]` (data.sequences.t2m_prompt);
      everything before the final [BOM] is the condition CFG drops.
    rng: one key, or B keys (one per prompt: the sample of a prompt then does
      not depend on the rest of the batch).
    max_latents: most latents per sequence (4 frames each).
    cfg_scale: guidance weight w (v_u + w (v_c - v_u)); None samples from the
      conditional branch alone (no unconditional forward at all).
    flow_steps, method: ODE steps and "euler" | "heun".
    temperature: scale of the initial noise.
    exit_threshold, min_latents: the exit rule (module docstring).

  Returns:
    (latents [B,max_latents,C] float32 in the normalised latent space, zeros
    past each length; lengths [B] int32 in min_latents..max_latents).
  """
  batch, knobs, static = _motion_settings(
      model, prompts, max_latents=max_latents, cfg_scale=cfg_scale, flow_steps=flow_steps,
      method=method, temperature=temperature, exit_threshold=exit_threshold,
      min_latents=min_latents)
  graphdef, params = nnx.split(model)
  keys = sequence_keys(rng, len(prompts))
  return _generate(graphdef, params, PromptBatch(*map(jnp.asarray, batch)), keys, knobs, static)


# ------------------------------------------------------------------ streaming

class StreamChunk(NamedTuple):
  """What `stream_motion` yields per latent step.

  frames [B,4,Cin]: the 4 new normalised feature frames of every sequence.
  active [B] bool: False for sequences that had already ended (their frames
    decode a zero latent and are not part of the motion).
  """
  frames: jax.Array
  active: jax.Array


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _stream_start(graphdef, params, prompt, keys, knobs, static) -> MotionState:
  return _start(nnx.merge(graphdef, params), prompt, keys, knobs, static)


@functools.partial(jax.jit, static_argnames=("graphdef", "static"), donate_argnames=("state",))
def _stream_advance(graphdef, params, state, prompt_lengths, keys, knobs, static) -> MotionState:
  return _advance(nnx.merge(graphdef, params), state, prompt_lengths, keys, knobs, static)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _vae_step(graphdef, params, decode_state, latent, latent_mean, latent_std):
  """Normalised latent [B,C] -> (decode state, 4 frames [B,4,Cin])."""
  vae = nnx.merge(graphdef, params)
  return vae.decode_step(decode_state, (latent * latent_std + latent_mean)[:, None])


def stream_motion(model: llamo_lib.LLaMo, vae: vae_lib.MotionVAE, prompts: Sequence[np.ndarray],
                  rng: jax.Array, *, latent_mean: np.ndarray, latent_std: np.ndarray,
                  max_latents: int, cfg_scale: float | None = DEFAULT_CFG_SCALE,
                  flow_steps: int = 50, method: str = "euler", temperature: float = 1.0,
                  exit_threshold: float = 0.5, min_latents: int = 1) -> Iterator[StreamChunk]:
  """Yields a StreamChunk (4 new frames per sequence) as soon as each latent is sampled.

  Same arguments and random numbers as `generate_motion`; latent_mean/std [C]
  are the latent statistics (latents are denormalised before the VAE). The
  concatenated frames equal `decode_latents` of `generate_motion`'s latents
  (each sequence up to 4*length frames). Stops when every sequence has exited
  or after max_latents chunks.
  """
  batch, knobs, static = _motion_settings(
      model, prompts, max_latents=max_latents, cfg_scale=cfg_scale, flow_steps=flow_steps,
      method=method, temperature=temperature, exit_threshold=exit_threshold,
      min_latents=min_latents)
  mean, std = _latent_stats(vae, latent_mean, latent_std)
  graphdef, params = nnx.split(model)
  vae_graphdef, vae_params = nnx.split(vae)
  keys = sequence_keys(rng, len(prompts))
  prompt = PromptBatch(*map(jnp.asarray, batch))
  decode_state = vae.init_decode_state(len(prompts))
  state = _stream_start(graphdef, params, prompt, keys, knobs, static)
  active = jnp.ones((len(prompts),), bool)
  for count in range(1, max_latents + 1):
    decode_state, frames = _vae_step(vae_graphdef, vae_params, decode_state, state.latent,
                                     mean, std)
    yield StreamChunk(frames, active)
    if count == max_latents:
      return
    state = _stream_advance(graphdef, params, state, prompt.lengths, keys, knobs, static)
    active = ~state.done
    if not bool(jnp.any(active)):
      return


# ------------------------------------------------------------------ VAE decoding

def _latent_stats(vae: vae_lib.MotionVAE, latent_mean: np.ndarray, latent_std: np.ndarray
                  ) -> tuple[jax.Array, jax.Array]:
  c = vae.cfg.latent_dim
  mean, std = jnp.asarray(latent_mean, jnp.float32), jnp.asarray(latent_std, jnp.float32)
  if mean.shape != (c,) or std.shape != (c,):
    raise ValueError(f"latent_mean/latent_std must have shape [{c}] (the VAE's latent_dim), got "
                     f"{mean.shape} and {std.shape}; use the stats the LLaMo was trained with.")
  return mean, std


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _vae_decode(graphdef, params, latents, latent_mean, latent_std):
  return nnx.merge(graphdef, params).decode(latents * latent_std + latent_mean)


def decode_latents(vae: vae_lib.MotionVAE, latents: jax.Array, lengths: jax.Array,
                   latent_mean: np.ndarray, latent_std: np.ndarray) -> list[np.ndarray]:
  """Normalised latents [B,K,C] + lengths [B] -> B normalised feature arrays [4*len_b, Cin].

  latent_mean/std [C]: the latent statistics the LLaMo was trained with.
  """
  mean, std = _latent_stats(vae, latent_mean, latent_std)
  graphdef, params = nnx.split(vae)
  frames = np.asarray(_vae_decode(graphdef, params, jnp.asarray(latents, jnp.float32), mean, std))
  lengths = np.asarray(lengths)
  if lengths.shape != frames.shape[:1] or lengths.min() < 1 or lengths.max() > latents.shape[1]:
    raise ValueError(f"lengths must be [B]={frames.shape[:1]} in 1..{latents.shape[1]}, got "
                     f"{lengths!r}.")
  return [frames[i, :vae_lib.FRAMES_PER_LATENT * int(n)] for i, n in enumerate(lengths)]


# ------------------------------------------------------------------ motion to text

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
