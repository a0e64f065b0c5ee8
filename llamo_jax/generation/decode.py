"""VAE decoding of generated latents to motion features.

Latents are in the normalised latent space the LLaMo was trained in;
`decode_latents` denormalises them with the latent statistics for the VAE.

Dimension names: B batch, K latents, C latent, Cin motion features.
"""
from __future__ import annotations

import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.models import motion_vae as vae_lib


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
