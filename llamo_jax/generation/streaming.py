"""Streaming text to motion: 4 new feature frames per latent as soon as it exists.

`stream_motion` runs the steps of `text_to_motion.generate_motion` as
separately jitted functions (prefill + first latent, one decode+exit+sample
step) and one VAE `decode_step` per latent, yielding each latent's frames
before the next latent is sampled. Same arguments and random numbers as
`generate_motion`; the concatenated frames equal `decode.decode_latents` of its
latents.

Dimension names: B batch, C latent, Cin motion features.
"""
from __future__ import annotations

import functools
from typing import Iterator, NamedTuple, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.generation import decode
from llamo_jax.generation import text_to_motion as t2m
from llamo_jax.generation.prompts import PromptBatch, sequence_keys
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import motion_vae as vae_lib


class StreamChunk(NamedTuple):
  """What `stream_motion` yields per latent step.

  frames [B,4,Cin]: the 4 new normalised feature frames of every sequence.
  active [B] bool: False for sequences that had already ended (their frames
    decode a zero latent and are not part of the motion).
  """
  frames: jax.Array
  active: jax.Array


@functools.partial(jax.jit, static_argnames=("graphdef", "static"))
def _stream_start(graphdef, params, prompt, keys, knobs, static) -> t2m.MotionState:
  model = nnx.merge(graphdef, params)
  return t2m._start(model, prompt, keys, knobs, static)  # pylint: disable=protected-access


@functools.partial(jax.jit, static_argnames=("graphdef", "static"), donate_argnames=("state",))
def _stream_advance(graphdef, params, state, prompt_lengths, keys, knobs, static
                    ) -> t2m.MotionState:
  model = nnx.merge(graphdef, params)
  return t2m._advance(model, state, prompt_lengths, keys, knobs, static)  # pylint: disable=protected-access


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _vae_step(graphdef, params, decode_state, latent, latent_mean, latent_std):
  """Normalised latent [B,C] -> (decode state, 4 frames [B,4,Cin])."""
  vae = nnx.merge(graphdef, params)
  return vae.decode_step(decode_state, (latent * latent_std + latent_mean)[:, None])


def stream_motion(model: llamo_lib.LLaMo, vae: vae_lib.MotionVAE, prompts: Sequence[np.ndarray],
                  rng: jax.Array, *, latent_mean: np.ndarray, latent_std: np.ndarray,
                  max_latents: int, cfg_scale: float | None = t2m.DEFAULT_CFG_SCALE,
                  flow_steps: int = 50, method: str = "euler", temperature: float = 1.0,
                  exit_threshold: float = 0.5, min_latents: int = 1,
                  flow_dtype: str = t2m.DEFAULT_FLOW_DTYPE,
                  backbone_dtype: str = t2m.DEFAULT_BACKBONE_DTYPE) -> Iterator[StreamChunk]:
  """Yields a StreamChunk (4 new frames per sequence) as soon as each latent is sampled.

  Same arguments and random numbers as `text_to_motion.generate_motion`;
  latent_mean/std [C] are the latent statistics (latents are denormalised
  before the VAE). The concatenated frames equal `decode.decode_latents` of
  `generate_motion`'s latents (each sequence up to 4*length frames). Stops when every sequence has exited
  or after max_latents chunks.
  """
  batch, knobs, static = t2m._motion_settings(  # pylint: disable=protected-access
      model, prompts, max_latents=max_latents, cfg_scale=cfg_scale, flow_steps=flow_steps,
      method=method, temperature=temperature, exit_threshold=exit_threshold,
      min_latents=min_latents, flow_dtype=flow_dtype, backbone_dtype=backbone_dtype)
  mean, std = decode._latent_stats(vae, latent_mean, latent_std)  # pylint: disable=protected-access
  graphdef, params = t2m.split_for_sampling(model, flow_dtype, backbone_dtype)
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
