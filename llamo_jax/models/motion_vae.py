"""Causal motion VAE: 4 frames of motion features <-> one continuous latent (LLaMo's motion token).

Encoder: causal conv -> act -> 2 x [causal stride-2 conv (k=4), residual stack]
-> causal conv to the latent (C). Decoder: causal conv -> act -> 2 x [residual
stack, nearest x2 upsampling, causal conv] -> causal conv -> act -> causal conv
to the features. Residual stacks use dilations growth**(depth-1) .. 1 (9,3,1).
Every conv pads on the left only (see causal_conv.py), so:
  * latent k depends only on frames <= 4k+3;
  * decoded frames 4k..4k+3 depend only on latents <= k.
That makes both directions streamable with a per-conv state: `encode_step`
turns 4 new frames into 1 latent, `decode_step` 1 new latent into 4 frames, and
fed chunk by chunk they reproduce the offline `encode`/`decode` exactly.

Bottleneck (`MotionVAEConfig.quantizer`):
  * "continuous" (LLaMo): the encoder predicts only the mean; in training the
    decoder reads mean + sigma*eps with sigma ~ U(0, sigma_max) per example,
    a fixed small noise so it tolerates the flow head's sampling error.
  * "fsq" (discrete baseline, same code path): the mean is projected to
    len(fsq_levels) dims, finite-scalar-quantised and projected back.

Lengths not divisible by 4: `encode` pads the end to a multiple of 4 by
repeating the last valid frame (`pad_frames`), giving ceil(T/4) latents; the
streaming caller pads its last partial chunk the same way. `__call__` and
`decode(z, length=T)` crop the decoded 4*ceil(T/4) frames back to T.

Works on normalised features [B,T,Cin] (263-dim HumanML3D at 20 fps or 272-dim
at 30 fps). Dimension names: B batch, T frames, K latents (= ceil(T/4)),
C latent, W width.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx
from flax import struct
import jax
import jax.numpy as jnp

from llamo_jax.core import config_dataclass
from llamo_jax.models import fsq as fsq_lib
from llamo_jax.models.causal_conv import CausalConv1d
from llamo_jax.models.llama import DTYPES

FRAMES_PER_LATENT = 4  # two stride-2 stages; the LLaMo token rate (fixed by design)
ACTIVATIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "gelu": jax.nn.gelu}
QUANTIZERS = ("continuous", "fsq")


@dataclasses.dataclass(frozen=True)
class MotionVAEConfig(config_dataclass.FromDict):
  """Shapes of the motion VAE (hashable: a static jit argument)."""
  input_dim: int = 263          # representation dim: 263 (hml263, 20 fps) or 272 (mm272, 30 fps)
  latent_dim: int = 32          # C; the paper's ablation: 16 / 32 / 64
  width: int = 512              # W, channels of every hidden conv
  depth: int = 3                # residual blocks per stage
  dilation_growth_rate: int = 3  # dilations growth**(depth-1) .. 1 -> 9, 3, 1
  activation: str = "relu"
  quantizer: str = "continuous"  # "continuous" (LLaMo) | "fsq" (discrete baseline)
  fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # used when quantizer == "fsq"
  sigma_max: float = 0.01       # training noise sigma ~ U(0, sigma_max) (continuous only)
  dtype: str = "float32"        # compute dtype
  param_dtype: str = "float32"  # storage dtype

  def __post_init__(self):
    if isinstance(self.fsq_levels, (list, tuple)):
      object.__setattr__(self, "fsq_levels", tuple(self.fsq_levels))
    for name in ("input_dim", "latent_dim", "width", "depth", "dilation_growth_rate"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"MotionVAEConfig.{name} must be a positive int, got {value!r}.")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"MotionVAEConfig.activation={self.activation!r} is not one of "
                       f"{sorted(ACTIVATIONS)}.")
    if self.quantizer not in QUANTIZERS:
      raise ValueError(f"MotionVAEConfig.quantizer={self.quantizer!r} is not one of {QUANTIZERS}.")
    fsq_lib.check_levels(self.fsq_levels)
    if not isinstance(self.sigma_max, (int, float)) or self.sigma_max < 0:
      raise ValueError(f"MotionVAEConfig.sigma_max must be a float >= 0, got {self.sigma_max!r}.")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f"MotionVAEConfig.{name}={getattr(self, name)!r} is not one of "
                         f"{sorted(DTYPES)}.")

  @property
  def dilations(self) -> tuple[int, ...]:
    return tuple(self.dilation_growth_rate ** i for i in reversed(range(self.depth)))


PRESETS: dict[str, MotionVAEConfig] = {
    # CPU scale (configs/motion_vae.py:tiny and the demo).
    "tiny": MotionVAEConfig(width=128, latent_dim=32, depth=3),
    # The paper's scale (MotionStreamer's causal TAE widths), latent 32.
    "paper": MotionVAEConfig(width=512, latent_dim=32, depth=3),
}


def get_preset(name: str, **overrides: Any) -> MotionVAEConfig:
  """A preset config with field overrides, e.g. get_preset("paper", input_dim=272)."""
  if name not in PRESETS:
    raise ValueError(f"Unknown MotionVAE preset {name!r}; presets: {sorted(PRESETS)}.")
  return MotionVAEConfig.from_dict({**PRESETS[name].to_dict(), **overrides})


@struct.dataclass
class VAEOutput:
  """What a training forward pass returns.

  recon [B,T,Cin]: decoded features (cropped to the input length).
  mean [B,K,C]: the encoder output before the bottleneck (the latent mean).
  latent [B,K,C]: what the decoder read (mean + noise, or the FSQ-quantised latent).
  indices [B,K] int32 FSQ code indices, or None for the continuous bottleneck
    (the loss applies the KL-style penalty exactly when indices is None).
  """
  recon: jax.Array
  mean: jax.Array
  latent: jax.Array
  indices: jax.Array | None = None


def num_latents(num_frames: int) -> int:
  """K = ceil(T/4), the number of latents of T frames."""
  return -(-num_frames // FRAMES_PER_LATENT)


def pad_frames(x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
  """x [B,T,Cin] -> [B,4*ceil(T/4),Cin], frames at or past each length = its last valid frame.

  lengths [B] int (valid frames per example) or None (all T valid). Repeating
  the last valid frame (rather than zeros) is what a streaming caller does with
  a partial last chunk, so padded batches encode like the clip alone would.
  """
  b, t, _ = x.shape
  steps = jnp.arange(num_latents(t) * FRAMES_PER_LATENT)
  last = jnp.full((b,), t - 1) if lengths is None else jnp.clip(lengths - 1, 0, t - 1)
  src = jnp.minimum(steps[None, :], last[:, None])
  return jnp.take_along_axis(x, src[:, :, None], axis=1)


class CausalConvResBlock(nnx.Module):
  """x + conv_k1(act(conv_k3_dilated(act(x)))), both convs causal (a 1D conv block over time).

  Not the flow head's `AdaLNResBlock` (a per-token MLP block modulated by a condition).
  """

  def __init__(self, width: int, dilation: int, activation: str, **kw):
    self.conv1 = CausalConv1d(width, width, 3, dilation=dilation, **kw)
    self.conv2 = CausalConv1d(width, width, 1, **kw)
    self.activation = activation

  def init_state(self, batch: int):
    return (self.conv1.init_state(batch), self.conv2.init_state(batch))

  def __call__(self, x, state):
    act = ACTIVATIONS[self.activation]
    h, s1 = self.conv1(act(x), state[0])
    h, s2 = self.conv2(act(h), state[1])
    return x + h, (s1, s2)


def _run_blocks(blocks, x, states):
  new = []
  for block, s in zip(blocks, states):
    x, s = block(x, s)
    new.append(s)
  return x, tuple(new)


class EncoderStage(nnx.Module):
  """Causal stride-2 conv (k=4: output t reads inputs <= 2t+1), then a residual stack."""

  def __init__(self, cfg: MotionVAEConfig, **kw):
    self.down = CausalConv1d(cfg.width, cfg.width, 4, stride=2, **kw)
    self.blocks = nnx.List([CausalConvResBlock(cfg.width, d, cfg.activation, **kw)
                            for d in cfg.dilations])

  def init_state(self, batch: int):
    return (self.down.init_state(batch), tuple(b.init_state(batch) for b in self.blocks))

  def __call__(self, x, state):
    x, s_down = self.down(x, state[0])
    x, s_blocks = _run_blocks(self.blocks, x, state[1])
    return x, (s_down, s_blocks)


class DecoderStage(nnx.Module):
  """A residual stack, nearest x2 upsampling (frames 2t, 2t+1 copy step t), then a causal conv."""

  def __init__(self, cfg: MotionVAEConfig, **kw):
    self.blocks = nnx.List([CausalConvResBlock(cfg.width, d, cfg.activation, **kw)
                            for d in cfg.dilations])
    self.conv = CausalConv1d(cfg.width, cfg.width, 3, **kw)

  def init_state(self, batch: int):
    return (tuple(b.init_state(batch) for b in self.blocks), self.conv.init_state(batch))

  def __call__(self, x, state):
    x, s_blocks = _run_blocks(self.blocks, x, state[0])
    x = jnp.repeat(x, 2, axis=1)
    x, s_conv = self.conv(x, state[1])
    return x, (s_blocks, s_conv)


class Encoder(nnx.Module):
  """Features [B,4n,Cin] -> latent means [B,n,C] (chunk-wise with a state)."""

  def __init__(self, cfg: MotionVAEConfig, **kw):
    self.conv_in = CausalConv1d(cfg.input_dim, cfg.width, 3, **kw)
    self.stages = nnx.List([EncoderStage(cfg, **kw) for _ in range(2)])
    self.conv_out = CausalConv1d(cfg.width, cfg.latent_dim, 3, **kw)
    self.activation = cfg.activation

  def init_state(self, batch: int):
    return (self.conv_in.init_state(batch), tuple(s.init_state(batch) for s in self.stages),
            self.conv_out.init_state(batch))

  def __call__(self, x, state):
    x, s_in = self.conv_in(x, state[0])
    x, s_stages = _run_blocks(self.stages, ACTIVATIONS[self.activation](x), state[1])
    x, s_out = self.conv_out(x, state[2])
    return x, (s_in, s_stages, s_out)


class Decoder(nnx.Module):
  """Latents [B,n,C] -> features [B,4n,Cout] (chunk-wise with a state)."""

  def __init__(self, cfg: MotionVAEConfig, **kw):
    self.conv_in = CausalConv1d(cfg.latent_dim, cfg.width, 3, **kw)
    self.stages = nnx.List([DecoderStage(cfg, **kw) for _ in range(2)])
    self.conv_mid = CausalConv1d(cfg.width, cfg.width, 3, **kw)
    self.conv_out = CausalConv1d(cfg.width, cfg.input_dim, 3, **kw)
    self.activation = cfg.activation

  def init_state(self, batch: int):
    return (self.conv_in.init_state(batch), tuple(s.init_state(batch) for s in self.stages),
            self.conv_mid.init_state(batch), self.conv_out.init_state(batch))

  def __call__(self, z, state):
    act = ACTIVATIONS[self.activation]
    x, s_in = self.conv_in(z, state[0])
    x, s_stages = _run_blocks(self.stages, act(x), state[1])
    x, s_mid = self.conv_mid(x, state[2])
    x, s_out = self.conv_out(act(x), state[3])
    return x, (s_in, s_stages, s_mid, s_out)


class MotionVAE(nnx.Module):
  """The causal motion VAE (continuous or FSQ bottleneck, see module docstring).

  Params: encoder.*, decoder.* (every conv: .conv.kernel [k,Cin,Cout], .conv.bias),
  fsq.project_{in,out}.* when quantizer == "fsq".
  """

  def __init__(self, cfg: MotionVAEConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    kw = dict(rngs=rngs, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype])
    self.encoder = Encoder(cfg, **kw)
    self.decoder = Decoder(cfg, **kw)
    self.fsq = fsq_lib.FSQ(cfg.latent_dim, cfg.fsq_levels, **kw) if cfg.quantizer == "fsq" else None

  # ------------------------------------------------------------------ offline

  def _check_frames(self, x: jax.Array, what: str) -> None:
    if x.ndim != 3 or x.shape[-1] != self.cfg.input_dim:
      raise ValueError(f"MotionVAE.{what} expects normalised features [B,T,{self.cfg.input_dim}], "
                       f"got shape {x.shape}; set MotionVAEConfig.input_dim to the "
                       "representation's dim.")

  def _check_latents(self, z: jax.Array, what: str) -> None:
    if z.ndim != 3 or z.shape[-1] != self.cfg.latent_dim:
      raise ValueError(f"MotionVAE.{what} expects latents [B,K,{self.cfg.latent_dim}], "
                       f"got shape {z.shape}.")

  def encode_mean(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Normalised features x [B,T,Cin] -> encoder means [B,ceil(T/4),C] (before the bottleneck)."""
    self._check_frames(x, "encode")
    mean, _ = self.encoder(pad_frames(x, lengths), self.encoder.init_state(x.shape[0]))
    return mean

  def bottleneck(self, mean: jax.Array, noise_key: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array | None]:
    """mean [B,K,C] -> (latent the decoder reads [B,K,C], FSQ indices [B,K] or None).

    Continuous: mean itself, plus sigma*eps with sigma ~ U(0, sigma_max) per
    example when noise_key is given (training). FSQ: the quantised latent
    (noise_key unused: quantisation is the bottleneck).
    """
    if self.fsq is not None:
      return self.fsq(mean)
    if noise_key is None:
      return mean, None
    k_sigma, k_eps = jax.random.split(noise_key)
    sigma = jax.random.uniform(k_sigma, (mean.shape[0], 1, 1), mean.dtype, 0.0, self.cfg.sigma_max)
    return mean + sigma * jax.random.normal(k_eps, mean.shape, mean.dtype), None

  def encode(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """Normalised features x [B,T,Cin] -> motion tokens [B,ceil(T/4),C] (no noise).

    lengths [B] int: valid frames per example; later frames are ignored (see pad_frames).
    """
    return self.bottleneck(self.encode_mean(x, lengths))[0]

  def decode(self, z: jax.Array, length: int | None = None) -> jax.Array:
    """Latents z [B,K,C] -> normalised features [B,4K,Cin], or the first `length` frames."""
    self._check_latents(z, "decode")
    max_length = z.shape[1] * FRAMES_PER_LATENT
    if length is not None and not 0 < length <= max_length:
      raise ValueError(f"MotionVAE.decode: length={length} is not in 1..{max_length} "
                       f"({FRAMES_PER_LATENT} frames per latent, {z.shape[1]} latents).")
    out, _ = self.decoder(z, self.decoder.init_state(z.shape[0]))
    return out if length is None else out[:, :length]

  def __call__(self, x: jax.Array, *, lengths: jax.Array | None = None,
               noise_key: jax.Array | None = None) -> VAEOutput:
    """Training/eval forward: x [B,T,Cin] -> VAEOutput (recon [B,T,Cin]); noise iff noise_key."""
    mean = self.encode_mean(x, lengths)
    latent, indices = self.bottleneck(mean, noise_key)
    return VAEOutput(recon=self.decode(latent, x.shape[1]), mean=mean, latent=latent,
                     indices=indices)

  # ------------------------------------------------------------------ FSQ codes

  def indices_to_latents(self, indices: jax.Array) -> jax.Array:
    """FSQ code indices [B,K] -> latents [B,K,C] for `decode` (FSQ models only)."""
    if self.fsq is None:
      raise ValueError("indices_to_latents needs an FSQ model (MotionVAEConfig.quantizer='fsq').")
    return self.fsq.from_indices(indices)

  # ------------------------------------------------------------------ streaming

  def init_encode_state(self, batch: int) -> Any:
    """Streaming encoder state before the first frame: a pytree of per-conv states
    [B, (k-1)*d+1-stride, Cin_of_that_conv], zeros (= the offline left padding)."""
    return self.encoder.init_state(batch)

  def encode_step(self, state: Any, frames: jax.Array) -> tuple[Any, jax.Array]:
    """4 new normalised frames [B,4,Cin] -> (new state, motion token [B,1,C]).

    Equals `encode` of the concatenated frames. Pad a clip's last partial chunk
    by repeating its last frame (as `pad_frames` does).
    """
    self._check_frames(frames, "encode_step")
    if frames.shape[1] != FRAMES_PER_LATENT:
      raise ValueError(f"MotionVAE.encode_step takes exactly {FRAMES_PER_LATENT} frames per call, "
                       f"got {frames.shape[1]}; pad a partial last chunk with its last frame.")
    mean, state = self.encoder(frames, state)
    return state, self.bottleneck(mean)[0]

  def init_decode_state(self, batch: int) -> Any:
    """Streaming decoder state before the first latent (pytree of zero per-conv states)."""
    return self.decoder.init_state(batch)

  def decode_step(self, state: Any, latent: jax.Array) -> tuple[Any, jax.Array]:
    """One new latent [B,1,C] -> (new state, 4 normalised frames [B,4,Cin]); equals `decode`."""
    self._check_latents(latent, "decode_step")
    if latent.shape[1] != 1:
      raise ValueError(f"MotionVAE.decode_step takes one latent per call, got {latent.shape[1]}.")
    frames, state = self.decoder(latent, state)
    return state, frames


def param_count(model: nnx.Module) -> int:
  """Number of parameters (nnx.Param leaves) of a model."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
