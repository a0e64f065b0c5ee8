"""Flow-matching head: an adaLN MLP velocity field f(x_t, t, h) and its ODE samplers.

The network follows MAR's SimpleMLPAdaLN pattern (written from its
description): a sinusoidal timestep embedding through an MLP plus a
projection of the condition h are summed into a conditioning vector c; x_t is
projected to the width W; each of `depth` residual blocks applies a LayerNorm
without affine, a shift/scale/gate from c (zero-initialised modulation), a
Linear-SiLU-Linear MLP and a gated residual; a final adaLN layer with a
zero-initialised output projection maps back to the latent size C. At init
the head therefore outputs exactly zero.

Rectified flow: x_t = (1-t)*eps + t*z, velocity target v = z - eps; t=0 is
noise, t=1 data. Sampling integrates dx/dt = v from t=0 to 1 (Euler or Heun)
inside a lax.fori_loop, with classifier-free guidance
v = v_uncond + w*(v_cond - v_uncond) and a temperature on the initial noise.

Compute dtype: the head trains and samples in float32. `sampling_state(state,
"bfloat16")` casts the kernels of the W x W / W x kW layers (the adaLN
modulations and the x path's MLPs, where the ODE's FLOPs are) to bfloat16; a
Linear multiplies in its kernel's dtype with float32 accumulation, so the ODE
state x, t, the layer norms and the Euler/Heun updates stay float32.

Dimension names: B.. any leading dims, C latent, D condition (model), W width.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from llamo_jax.models.layers import INIT_STD

FREQ_DIM = 256      # sinusoidal timestep features
TIME_SCALE = 1000.  # t in [0,1] is embedded as t*1000 (diffusion-step scale)
METHODS = ("euler", "heun")
COMPUTE_DTYPES = ("float32", "bfloat16")  # of the ODE's matmuls (`sampling_state`)
# The layers whose kernels `sampling_state` casts: W x W and W x kW, the ODE's FLOPs. The
# conditioning (time_fc1/2, cond_proj: once per ODE) and the thin ends (in_proj,
# out_proj: C x W) stay float32.
_CAST_LAYERS = ("fc1", "fc2", "modulation", "final_modulation")


def _param(rngs: nnx.Rngs | None, shape: Sequence[int], axes: Sequence[str | None],
           init: str) -> nnx.Param:
  if init == "zeros":
    value = jnp.zeros(shape, jnp.float32)
  elif init == "normal":
    value = INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
  else:  # "xavier": keeps the MLP's activations O(1) at any width.
    value = jax.nn.initializers.xavier_uniform()(rngs.params(), shape, jnp.float32)
  return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


class Linear(nnx.Module):
  """y = x @ kernel [I,O] + bias [O], float32 (small head: replicated params).

  A float32 kernel (training, the default) multiplies in float32; a bfloat16 one
  (`sampling_state`) multiplies x cast to bfloat16 with float32 accumulation.
  """

  def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs, init: str = "xavier"):
    self.kernel = _param(rngs, (d_in, d_out), (None, None), init)
    self.bias = _param(None, (d_out,), (None,), "zeros")

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel[...]
    if kernel.dtype == jnp.float32:
      return x.astype(jnp.float32) @ kernel + self.bias[...]
    return jnp.dot(x.astype(kernel.dtype), kernel, preferred_element_type=jnp.float32) + self.bias[...]


def _layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.var(x, axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def timestep_features(t: jax.Array, dim: int = FREQ_DIM) -> jax.Array:
  """Sinusoidal features of t [...] in [0,1] -> [..., dim] (cos | sin halves)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (t.astype(jnp.float32) * TIME_SCALE)[..., None] * freqs
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class AdaLNResBlock(nnx.Module):
  """LayerNorm -> adaLN shift/scale -> Linear-SiLU-Linear -> gated residual (an MLP block).

  Not the motion VAE's `CausalConvResBlock`: this one mixes channels of one token
  and is modulated by the condition; that one convolves over time.
  """

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.fc1 = Linear(width, width, rngs=rngs)
    self.fc2 = Linear(width, width, rngs=rngs)
    self.modulation = Linear(width, 3 * width, rngs=rngs, init="zeros")

  def __call__(self, x: jax.Array, mod: jax.Array) -> jax.Array:
    """x [...,W]; mod [...,3W] = modulation(silu(c)): shift | scale | gate."""
    shift, scale, gate = jnp.split(mod, 3, axis=-1)
    y = _layer_norm(x) * (1 + scale) + shift
    y = self.fc2(jax.nn.silu(self.fc1(y)))
    return x + gate * y


class FlowHead(nnx.Module):
  """Velocity field f(x_t [...,C], t [...], h [...,D]) -> v [...,C] (float32).

  f = velocity(x_t, modulations(condition(t, h))): the conditioning half does not
  depend on x_t, so the ODE sampler runs it once for all steps (`integrate_head`).
  """

  def __init__(self, latent_dim: int, cond_dim: int, width: int, depth: int, *,
               rngs: nnx.Rngs):
    self.latent_dim = latent_dim
    self.time_fc1 = Linear(FREQ_DIM, width, rngs=rngs, init="normal")
    self.time_fc2 = Linear(width, width, rngs=rngs, init="normal")
    self.cond_proj = Linear(cond_dim, width, rngs=rngs)
    self.in_proj = Linear(latent_dim, width, rngs=rngs)
    self.blocks = nnx.List([AdaLNResBlock(width, rngs=rngs) for _ in range(depth)])
    self.final_modulation = Linear(width, 2 * width, rngs=rngs, init="zeros")
    self.out_proj = Linear(width, latent_dim, rngs=rngs, init="zeros")

  def time_embedding(self, t: jax.Array) -> jax.Array:
    """t [...] -> [...,W]."""
    return self.time_fc2(jax.nn.silu(self.time_fc1(timestep_features(t))))

  def modulations(self, c: jax.Array) -> tuple[jax.Array, ...]:
    """Conditioning vector c [...,W] -> (per block [...,3W]..., final [...,2W])."""
    c = jax.nn.silu(c)
    return tuple(block.modulation(c) for block in self.blocks) + (self.final_modulation(c),)

  def velocity(self, x: jax.Array, mods: Sequence[jax.Array]) -> jax.Array:
    """x [...,C] with the `modulations` of its (t, h) -> v [...,C]."""
    if x.shape[-1] != self.latent_dim:
      raise ValueError(f"FlowHead input has {x.shape[-1]} channels; expected {self.latent_dim}.")
    y = self.in_proj(x)
    for block, mod in zip(self.blocks, mods):
      y = block(y, mod)
    shift, scale = jnp.split(mods[-1], 2, axis=-1)
    return self.out_proj(_layer_norm(y) * (1 + scale) + shift)

  def __call__(self, x: jax.Array, t: jax.Array, h: jax.Array) -> jax.Array:
    return self.velocity(x, self.modulations(self.time_embedding(t) + self.cond_proj(h)))


def check_compute_dtype(dtype: str, name: str = "flow_dtype") -> None:
  """One clear error for a sampling matmul dtype (`name`) that is not one of COMPUTE_DTYPES."""
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"{name} {dtype!r} is not one of {COMPUTE_DTYPES} (a matmul dtype in "
                     "sampling).")


def sampling_state(state: nnx.State, dtype: str) -> nnx.State:
  """A FlowHead's state (`nnx.split(head)[1]`) for sampling with its matmuls in `dtype`.

  "float32" returns `state` itself; "bfloat16" returns a copy whose kernels of
  _CAST_LAYERS are bfloat16 (biases and the other layers stay float32), so a head
  merged from it runs those matmuls with bfloat16 inputs and float32 accumulation
  (`Linear`). Cast once, outside the jitted ODE: a cast inside it would convert the
  weights on every call. Inference only: training reads the float32 head.
  """
  check_compute_dtype(dtype)
  if dtype == "float32":
    return state

  def cast(path, leaf):
    names = [getattr(k, "key", None) for k in path]
    if "kernel" in names and any(n in _CAST_LAYERS for n in names):
      return leaf.astype(dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(cast, state)


def flow_loss(head: FlowHead, z: jax.Array, h: jax.Array, mask: jax.Array, rng: jax.Array,
              k_t: int = 4) -> jax.Array:
  """Masked rectified-flow loss, t resampled k_t times per token.

  z [B,T,C] targets, h [B,T,D] conditions, mask [B,T] (1 where z is a target).
  Returns the mean over masked tokens and draws of ||f(x_t,t,h) - (z-eps)||^2 / C.
  """
  t_rng, eps_rng = jax.random.split(rng)
  t = jax.random.uniform(t_rng, (k_t,) + mask.shape)
  eps = jax.random.normal(eps_rng, (k_t,) + z.shape)
  z = z.astype(jnp.float32)
  x_t = (1 - t[..., None]) * eps + t[..., None] * z
  pred = head(x_t, t, jnp.broadcast_to(h, (k_t,) + h.shape))
  err = jnp.mean(jnp.square(pred - (z - eps)), axis=-1)                 # [k,B,T]
  mask = jnp.broadcast_to(mask.astype(jnp.float32), err.shape)
  return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def integrate(velocity: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array, *,
              steps: int = 50, method: str = "euler") -> jax.Array:
  """Integrates dx/dt = velocity(x, t) from t=0 to 1 in `steps` uniform steps.

  velocity takes x [...] and a scalar t. Euler: 1 evaluation per step; Heun
  (explicit trapezoid): 2. Returns x(1) with x0's shape.
  """
  if method not in METHODS:
    raise ValueError(f"ODE method {method!r} is not one of {METHODS}.")
  if steps < 1:
    raise ValueError(f"ODE steps must be >= 1, got {steps}.")
  dt = 1.0 / steps

  def body(i, x):
    t = i * dt
    v1 = velocity(x, t)
    if method == "euler":
      return x + dt * v1
    v2 = velocity(x + dt * v1, t + dt)
    return x + 0.5 * dt * (v1 + v2)

  return jax.lax.fori_loop(0, steps, body, x0.astype(jnp.float32))


def guided_velocity(head: FlowHead, h: jax.Array, h_uncond: jax.Array | None = None,
                    cfg_scale: float = 1.0) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """velocity(x, t) of the head at condition h [...,D], with classifier-free guidance
  v_uncond + w*(v_cond - v_uncond) when h_uncond (same shape) is given."""
  if h_uncond is None:
    return lambda x, t: head(x, jnp.full(x.shape[:-1], t), h)
  if h_uncond.shape != h.shape:
    raise ValueError(f"h_uncond {h_uncond.shape} and h {h.shape} must have the same shape.")
  both_h = jnp.stack([h, h_uncond])

  def velocity(x, t):
    both_x = jnp.stack([x, x])
    v_cond, v_uncond = head(both_x, jnp.full(both_x.shape[:-1], t), both_h)
    return v_uncond + cfg_scale * (v_cond - v_uncond)

  return velocity


def integrate_head(head: FlowHead, h: jax.Array, x0: jax.Array, *, h_uncond: jax.Array | None = None,
                   cfg_scale: float = 1.0, steps: int = 50, method: str = "euler") -> jax.Array:
  """`integrate(guided_velocity(head, h, h_uncond, cfg_scale), x0, ...)`, faster.

  The conditioning half of the head (time embedding, condition projection and
  every adaLN modulation) runs once, batched over the grid times (steps for Euler,
  steps+1 for Heun), before the loop; each ODE step then runs only the x path. For
  a 1-token decode step this removes most of the weight reads per step (the
  modulations are 3W x W per block against 2W x W for the MLP). Extra memory: up
  to (steps+1) x rows x (3*depth+2)*W
  floats. h [...,D], x0 [...,C] -> x(1) [...,C].
  """
  if method not in METHODS:
    raise ValueError(f"ODE method {method!r} is not one of {METHODS}.")
  if steps < 1:
    raise ValueError(f"ODE steps must be >= 1, got {steps}.")
  guided = h_uncond is not None
  if guided:
    if h_uncond.shape != h.shape:
      raise ValueError(f"h_uncond {h_uncond.shape} and h {h.shape} must have the same shape.")
    h = jnp.stack([h, h_uncond])
  dt = 1.0 / steps
  # The grid of `integrate`: Euler evaluates t_0..t_{S-1}, Heun also t_S.
  n_t = steps + 1 if method == "heun" else steps
  t = jnp.arange(n_t, dtype=jnp.float32) * dt
  temb = head.time_embedding(t).reshape((n_t,) + (1,) * (h.ndim - 1) + (-1,))
  mods = head.modulations(temb + head.cond_proj(h)[None])             # each [S+1,(2),...,kW]

  def velocity(x, i):
    v = head.velocity(jnp.stack([x, x]) if guided else x, [m[i] for m in mods])
    return v[1] + cfg_scale * (v[0] - v[1]) if guided else v

  def body(i, x):
    v1 = velocity(x, i)
    if method == "euler":
      return x + dt * v1
    v2 = velocity(x + dt * v1, i + 1)
    return x + 0.5 * dt * (v1 + v2)

  return jax.lax.fori_loop(0, steps, body, x0.astype(jnp.float32))


def sample(head: FlowHead, h: jax.Array, rng: jax.Array, *, h_uncond: jax.Array | None = None,
           cfg_scale: float = 1.0, steps: int = 50, method: str = "euler",
           temperature: float = 1.0) -> jax.Array:
  """Draws latents z [...,C] given h [...,D]: x0 = temperature * N(0,I), then the ODE."""
  x0 = temperature * jax.random.normal(rng, h.shape[:-1] + (head.latent_dim,))
  return integrate_head(head, h, x0, h_uncond=h_uncond, cfg_scale=cfg_scale, steps=steps,
                        method=method)
