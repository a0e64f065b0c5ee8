"""KV-cached text-to-motion generation with LLaMo (flow ODE + CFG + exit head, one jitted loop).

`generate_motion`: prefill `[BOS] caption [BOM]`, then per latent: the flow
head integrates its ODE from the hidden state h (classifier-free guidance
against an unconditional branch) to the next latent, that latent is fed back
through one cached decode step, and the exit head on the new h says whether
the motion ends there. The whole loop is one jitted `lax.while_loop` with the
KV cache in its carry; it stops early once every sequence has exited. The
prefill + first latent (`_start`) and one step (`_advance`) are also what
`streaming` jits separately.

Unconditional branch: the same prompt with every token before the final [BOM]
moved to a segment of its own (segment id -1), exactly how `LLaMo.loss` drops
captions in training, so [BOM] and the motion tokens see no condition. Positions
are identical in both branches. No query of the branch ever attends a caption
slot, so its prefill runs the [BOM] alone (one cached step at the prompt's last
slot, `prefill_branches`) instead of the whole prompt a second time; from then on
both branches run as one batch of 2B rows.

Expert buffers: a prompt's only motion-expert token is its [BOM] (and only under
bom_expert="motion") and every later step feeds motion tokens only, so the prefill
runs the motion expert on a 1-token buffer and the decode steps skip the text
expert (`mot.Buffers`): each step reads one expert's weights, not both.

Prompts are left-padded (`prompts.left_pad`), so all prompts end at the same
cache slot. Random numbers are per sequence (`prompts.sequence_keys`): latent
k of sequence b starts from the noise `temperature * N(0,I)` drawn with
`fold_in(key_b, k)`, so a prompt's sample does not depend on its batch
neighbours or on whether it was streamed.

Exit rule: after latent k (1-based) is fed, the sequence ends with length k
when sigmoid(exit logit of the conditional h) > exit_threshold and
k >= min_latents; a finished sequence stops changing (its later latents are 0).

Continuation: `prefix_latents` [B,P,C] with `prefix_lengths` [B] makes sequence b's
first prefix_lengths[b] latents the given ones (fed back like sampled ones; no exit
inside them), and the model continues from there: motion prediction, and a way to
see how much a run's text following depends on its first latents.

Flow dtype: `flow_dtype="bfloat16"` runs the flow ODE's W x W / W x kW matmuls
(adaLN modulations, x-path MLPs) with bfloat16 inputs and weights and float32
accumulation (`flow_head.sampling_state`, `split_for_sampling`); the ODE state, the
times and the Euler/Heun updates stay float32, and so does everything else. An
inference-time setting: training and checkpoints are float32.
`backbone_dtype="bfloat16"` does the same for the backbone's projections (q, k, v,
o and the FFN of every layer, `layers.sampling_blocks`): the prefill and each
decode step multiply in bfloat16 with float32 accumulation; the residual stream,
norms, attention and the KV cache stay float32.

Latents are in the normalised latent space the model was trained in
(`decode.decode_latents` turns them into motion).

Dimension names: B batch, T prompt length, K latents, C latent, D model.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.generation.prompts import PromptBatch, _check_prompts, left_pad, sequence_keys
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import layers as layers_lib
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import mot as mot_lib
from llamo_jax.models.attention import KVCache
from llamo_jax.models.llama import init_cache

DEFAULT_CFG_SCALE = 4.0  # our default (the paper's value is not known); tune on validation
DEFAULT_FLOW_DTYPE = "float32"  # also of runs whose config.sampling predates flow_dtype
DEFAULT_BACKBONE_DTYPE = "float32"  # ... or backbone_dtype
UNCOND_SEGMENT = -1      # segment of the dropped condition in the unconditional branch


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
  start_cfg_scale: jax.Array   # the guidance of latents 0..start_latents-1
  start_latents: jax.Array


class _Prefix(NamedTuple):
  """Given first latents (module docstring, Continuation): latents [B,max_latents,C], lengths [B]."""
  latents: jax.Array
  lengths: jax.Array


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


def _noise(keys: jax.Array, count: jax.Array, latent_dim: int) -> jax.Array:
  """The standard-normal start [B,C] of latent number `count` of each sequence."""
  step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, count)
  return jax.vmap(lambda k: jax.random.normal(k, (latent_dim,)))(step_keys)


def sampling_noise(rng: jax.Array, batch: int, max_latents: int, latent_dim: int) -> np.ndarray:
  """The noise `generate_motion(..., rng)` starts every latent from, before the temperature:
  [B,max_latents,C] float32 (what llamo_jax.pytorch's sampler takes to reproduce a sample)."""
  keys = sequence_keys(rng, batch)
  return np.stack([np.asarray(_noise(keys, jnp.int32(k), latent_dim)) for k in range(max_latents)], 1)


def _sample(model: llamo_lib.LLaMo, h: jax.Array, keys: jax.Array, count: jax.Array,
            knobs: _Knobs, static: _Static) -> jax.Array:
  """Latent number `count` [B,C] from h [B,D] (or [2B,D] cond|uncond with CFG)."""
  b = keys.shape[0]
  h = h.astype(jnp.float32)
  x0 = knobs.temperature * _noise(keys, count, model.config.latent_dim)
  cfg_scale = jnp.where(count < knobs.start_latents, knobs.start_cfg_scale, knobs.cfg_scale)
  return flow_lib.integrate_head(model.flow_head, h[:b], x0, h_uncond=h[b:] if static.guided else None,
                                 cfg_scale=cfg_scale, steps=static.flow_steps, method=static.method)


def prefill_branches(model: llamo_lib.LLaMo, prompt: PromptBatch, max_len: int, guided: bool
                     ) -> tuple[KVCache, jax.Array]:
  """The prompt batch [B,T] into a cache of max_len slots: (cache, h [B,D] at [BOM]), and
  with `guided` the unconditional branch too (cache of 2B rows, h [2B,D], conditional first).

  The unconditional rows hold only their [BOM] (slot T-1, the prompt's [BOM] position,
  segment 1); their other prompt slots stay empty (segment 0), which no query of
  segment 1 attends: the same keys and values wherever the branch looks as the whole
  prompt with its caption in segment UNCOND_SEGMENT, for one token per row.
  """
  tokens, positions, segment_ids = prompt.tokens, prompt.positions, prompt.segment_ids
  b, t = tokens.shape
  latent_dim = model.config.latent_dim
  # At most one motion-expert token per prompt: its [BOM] (bom_expert="motion").
  cache, _, h = llamo_lib.prefill(model, tokens, jnp.zeros((b, t, latent_dim)),
                                  jnp.zeros((b, t), jnp.int32), max_len, positions, segment_ids,
                                  buffers=(None, 1))
  if not guided:
    return cache, h
  bom_motion = model.config.bom_expert == "motion"
  empty = init_cache(model.cfg, b, max_len)._replace(end_index=jnp.int32(t - 1))
  ones = jnp.ones((b,), jnp.int32)
  uncond, _, h_uncond = llamo_lib.decode_step(
      model, empty, tokens[:, -1], jnp.zeros((b, latent_dim)), 0 * ones, positions[:, -1], ones,
      buffers=(0, None) if bom_motion else (None, 0))
  both = KVCache(k=jnp.concatenate([cache.k, uncond.k], axis=1),     # [L,2B,S,K,H]
                 v=jnp.concatenate([cache.v, uncond.v], axis=1),
                 end_index=cache.end_index,
                 segment_ids=jnp.concatenate([cache.segment_ids, uncond.segment_ids]))
  return both, jnp.concatenate([h, h_uncond])


def _start(model: llamo_lib.LLaMo, prompt: PromptBatch, keys: jax.Array, knobs: _Knobs,
           static: _Static, prefix: _Prefix | None = None) -> MotionState:
  """Prefill (both branches) and the first latent."""
  # max_latents - 1 latents are fed back at most (the last one is only sampled).
  cache, h = prefill_branches(model, prompt, prompt.tokens.shape[1] + static.max_latents - 1,
                              static.guided)
  b = keys.shape[0]
  z = _sample(model, h, keys, jnp.int32(0), knobs, static)
  if prefix is not None:
    z = jnp.where((prefix.lengths > 0)[:, None], prefix.latents[:, 0], z)
  return MotionState(cache, z, jnp.zeros((b,), bool), jnp.ones((b,), jnp.int32),
                     jnp.ones((), jnp.int32))


def _advance(model: llamo_lib.LLaMo, state: MotionState, prompt_lengths: jax.Array,
             keys: jax.Array, knobs: _Knobs, static: _Static, prefix: _Prefix | None = None
             ) -> MotionState:
  """Feeds the latest latent, applies the exit rule, samples the next latent."""
  b = keys.shape[0]
  rep = 2 if static.guided else 1
  # Latent k (1-based) sits at position len + k - 1 ([BOM] is at len - 1).
  position = jnp.tile(prompt_lengths + state.count - 1, rep)
  ones = jnp.ones((rep * b,), jnp.int32)
  # Every fed token is a latent: the text expert is skipped (module docstring, buffers).
  cache, _, h = llamo_lib.decode_step(model, state.cache, 0 * ones,
                                      jnp.tile(state.latent, (rep, 1)), ones, position, ones,
                                      buffers=(0, None))
  p_exit = jax.nn.sigmoid(model.exit_logits(h[:b].astype(jnp.float32)))
  can_exit = state.count >= knobs.min_latents
  z = _sample(model, h, keys, state.count, knobs, static)
  if prefix is not None:
    can_exit &= state.count >= prefix.lengths
    given = jnp.take(prefix.latents, jnp.minimum(state.count, prefix.latents.shape[1] - 1), axis=1)
    z = jnp.where((state.count < prefix.lengths)[:, None], given, z)
  done = state.done | ((p_exit > knobs.exit_threshold) & can_exit)
  z = jnp.where(done[:, None], 0.0, z)
  return MotionState(cache, z, done, state.lengths + (~done).astype(jnp.int32), state.count + 1)


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _generate(graphdef: nnx.GraphDef, params: nnx.State, prompt: PromptBatch, keys: jax.Array,
              knobs: _Knobs, static: _Static, prefix: _Prefix | None) -> tuple[jax.Array, jax.Array]:
  model = nnx.merge(graphdef, params)
  state = _start(model, prompt, keys, knobs, static, prefix)
  latents = jnp.zeros((keys.shape[0], static.max_latents, model.config.latent_dim), jnp.float32)
  latents = latents.at[:, 0].set(state.latent)

  def cond(carry):
    state, _ = carry
    return (state.count < static.max_latents) & ~jnp.all(state.done)

  def body(carry):
    state, latents = carry
    state = _advance(model, state, prompt.lengths, keys, knobs, static, prefix)
    latents = jax.lax.dynamic_update_slice(latents, state.latent[:, None],
                                           (0, state.count - 1, 0))
    return state, latents

  state, latents = jax.lax.while_loop(cond, body, (state, latents))
  return latents, state.lengths


# ------------------------------------------------------------------ text to motion

def _motion_settings(model: llamo_lib.LLaMo, prompts: Sequence[np.ndarray], *,
                     max_latents: int, cfg_scale: float | None, flow_steps: int, method: str,
                     temperature: float, exit_threshold: float, min_latents: int,
                     flow_dtype: str, backbone_dtype: str, start_cfg_scale: float | None = None,
                     start_latents: int = 0) -> tuple[PromptBatch, _Knobs, _Static]:
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
  flow_lib.check_compute_dtype(flow_dtype)
  flow_lib.check_compute_dtype(backbone_dtype, "backbone_dtype")
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature}.")
  if not 0.0 <= exit_threshold <= 1.0:
    raise ValueError(f"exit_threshold is a probability in [0,1], got {exit_threshold}.")
  if start_latents < 0:
    raise ValueError(f"start_latents must be >= 0, got {start_latents}.")
  if (start_latents == 0) != (start_cfg_scale is None):
    raise ValueError(f"Pass start_cfg_scale and start_latents >= 1 together (the guidance of the first "
                     f"latents), got start_cfg_scale={start_cfg_scale}, start_latents={start_latents}.")
  if start_cfg_scale is not None and cfg_scale is None:
    raise ValueError("start_cfg_scale needs guidance (cfg_scale is None: the conditional branch alone).")
  batch = left_pad(prompts)
  mot_lib.check_capacity(np.zeros_like(batch.tokens), model.text_capacity, model.motion_capacity)
  scale = 1.0 if cfg_scale is None else cfg_scale
  knobs = _Knobs(jnp.float32(scale), jnp.float32(temperature), jnp.float32(exit_threshold),
                 jnp.int32(min_latents), jnp.float32(scale if start_cfg_scale is None else start_cfg_scale),
                 jnp.int32(start_latents))
  static = _Static(max_latents, cfg_scale is not None, flow_steps, method)
  return batch, knobs, static


# split_for_sampling's latest casts, newest last: (key, the model's leaves cast from, result).
_casts: list[tuple] = []
_MAX_CASTS = 2  # e.g. two dtype pairs of one model, timed alternately


def split_for_sampling(model: llamo_lib.LLaMo, flow_dtype: str, backbone_dtype: str
                       ) -> tuple[nnx.GraphDef, nnx.State]:
  """`nnx.split(model)` with the flow head's matmul kernels in flow_dtype and the
  backbone's in backbone_dtype (module docstring, Flow dtype).

  Casting the backbone costs about a prefill (~0.2 s for 135M parameters on a CPU),
  so the latest _MAX_CASTS casts are kept and reused while the model holds the same
  arrays (the entry keeps them alive, so their ids stay theirs); updating a param
  replaces its array, and the next call casts again.
  """
  graphdef, params = nnx.split(model)
  if flow_dtype == backbone_dtype == "float32":
    return graphdef, params
  leaves = jax.tree.leaves(params)
  key = (graphdef, flow_dtype, backbone_dtype, tuple(map(id, leaves)))
  for entry in _casts:
    if entry[0] == key:
      return entry[2]
  params["flow_head"] = flow_lib.sampling_state(params["flow_head"], flow_dtype)
  params["layers"] = layers_lib.sampling_blocks(params["layers"], backbone_dtype)
  _casts[:] = _casts[1 - _MAX_CASTS:] + [(key, leaves, (graphdef, params))]
  return graphdef, params


def generate_motion(model: llamo_lib.LLaMo, prompts: Sequence[np.ndarray], rng: jax.Array, *,
                    max_latents: int, cfg_scale: float | None = DEFAULT_CFG_SCALE,
                    flow_steps: int = 50, method: str = "euler", temperature: float = 1.0,
                    exit_threshold: float = 0.5, min_latents: int = 1,
                    prefix_latents: np.ndarray | None = None, prefix_lengths: np.ndarray | None = None,
                    flow_dtype: str = DEFAULT_FLOW_DTYPE, backbone_dtype: str = DEFAULT_BACKBONE_DTYPE,
                    start_cfg_scale: float | None = None, start_latents: int = 0
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
    start_cfg_scale, start_latents: the guidance of the first start_latents latents
      instead of cfg_scale (guidance over the motion: the start is where the text decides).
    flow_steps, method: ODE steps and "euler" | "heun".
    temperature: scale of the initial noise.
    exit_threshold, min_latents: the exit rule (module docstring).
    prefix_latents, prefix_lengths: [B,P,C] normalised latents and [B] ints in 0..P: each
      sequence continues its given first latents (module docstring, Continuation).
    flow_dtype, backbone_dtype: "float32" | "bfloat16", the matmuls of the flow ODE and of
      the backbone (module docstring, Flow dtype).

  Returns:
    (latents [B,max_latents,C] float32 in the normalised latent space, zeros
    past each length; lengths [B] int32 in min_latents..max_latents).
  """
  batch, knobs, static = _motion_settings(
      model, prompts, max_latents=max_latents, cfg_scale=cfg_scale, flow_steps=flow_steps,
      method=method, temperature=temperature, exit_threshold=exit_threshold,
      min_latents=min_latents, flow_dtype=flow_dtype, backbone_dtype=backbone_dtype,
      start_cfg_scale=start_cfg_scale, start_latents=start_latents)
  graphdef, params = split_for_sampling(model, flow_dtype, backbone_dtype)
  keys = sequence_keys(rng, len(prompts))
  prefix = _prefix(model, len(prompts), max_latents, prefix_latents, prefix_lengths)
  return _generate(graphdef, params, PromptBatch(*map(jnp.asarray, batch)), keys, knobs, static, prefix)


def _prefix(model: llamo_lib.LLaMo, b: int, max_latents: int, latents: np.ndarray | None,
            lengths: np.ndarray | None) -> _Prefix | None:
  """generate_motion's checked continuation arguments, padded to max_latents (or None)."""
  if latents is None and lengths is None:
    return None
  if latents is None or lengths is None:
    raise ValueError("Pass prefix_latents and prefix_lengths together.")
  latents, lengths = np.asarray(latents, np.float32), np.asarray(lengths)
  c = model.config.latent_dim
  if latents.ndim != 3 or latents.shape[0] != b or latents.shape[2] != c:
    raise ValueError(f"prefix_latents must be [B,P,C]=[{b},P,{c}], got shape {latents.shape}.")
  p = latents.shape[1]
  if lengths.shape != (b,) or lengths.min() < 0 or lengths.max() > min(p, max_latents):
    raise ValueError(f"prefix_lengths must be [B]=({b},) ints in 0..{min(p, max_latents)} "
                     f"(prefix length and max_latents), got {lengths!r}.")
  padded = np.zeros((b, max_latents, c), np.float32)
  padded[:, :min(p, max_latents)] = latents[:, :max_latents]
  return _Prefix(jnp.asarray(padded), jnp.asarray(lengths, jnp.int32))
