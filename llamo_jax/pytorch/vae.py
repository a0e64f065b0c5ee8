"""The causal motion VAE in PyTorch (continuous bottleneck), offline encode and decode.

The twin of models/motion_vae.py and models/causal_conv.py: every conv pads on the
left only, by (k-1)*d + 1 - stride zero steps; 4 frames per latent. Parameter names
are the JAX module paths with `kernel` -> `weight` (layout.py).

Dimension names: B batch, T frames, K latents, C latent, W width.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from llamo_jax.pytorch import layout
from llamo_jax.pytorch._torch import torch

nn = torch.nn
F = torch.nn.functional

FRAMES_PER_LATENT = 4
ACTIVATIONS = {"relu": F.relu, "silu": F.silu,
               "gelu": lambda x: F.gelu(x, approximate="tanh")}  # jax.nn.gelu's default


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """Shapes of the exported VAE (config.json's "vae" section)."""
  input_dim: int
  latent_dim: int
  width: int
  depth: int
  dilation_growth_rate: int
  activation: str

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> VAEConfig:
    missing = [k for k in layout.VAE_FIELDS if k not in d]
    if missing:
      raise ValueError(f"config.json's 'vae' section lacks {missing}; re-export the model.")
    cfg = cls(**{k: d[k] for k in layout.VAE_FIELDS})
    if cfg.activation not in ACTIVATIONS:
      raise ValueError(f"vae.activation={cfg.activation!r} is not supported by the PyTorch VAE "
                       f"(supported: {sorted(ACTIVATIONS)}).")
    return cfg

  @property
  def dilations(self) -> tuple[int, ...]:
    return tuple(self.dilation_growth_rate ** i for i in reversed(range(self.depth)))


class CausalConv1d(nn.Module):
  """[B,T,Cin] -> [B,T/stride,Cout], left-padded; params conv.weight [Cout,Cin,k], conv.bias."""

  def __init__(self, c_in: int, c_out: int, k: int, *, stride: int = 1, dilation: int = 1):
    super().__init__()
    self.pad = (k - 1) * dilation + 1 - stride
    self.conv = nn.Conv1d(c_in, c_out, k, stride=stride, dilation=dilation)

  def forward(self, x):
    x = F.pad(x.transpose(1, 2), (self.pad, 0))
    return self.conv(x).transpose(1, 2)


class ResBlock(nn.Module):

  def __init__(self, width: int, dilation: int, act):
    super().__init__()
    self.conv1 = CausalConv1d(width, width, 3, dilation=dilation)
    self.conv2 = CausalConv1d(width, width, 1)
    self.act = act

  def forward(self, x):
    return x + self.conv2(self.act(self.conv1(self.act(x))))


class EncoderStage(nn.Module):

  def __init__(self, cfg: VAEConfig, act):
    super().__init__()
    self.down = CausalConv1d(cfg.width, cfg.width, 4, stride=2)
    self.blocks = nn.ModuleList([ResBlock(cfg.width, d, act) for d in cfg.dilations])

  def forward(self, x):
    x = self.down(x)
    for block in self.blocks:
      x = block(x)
    return x


class DecoderStage(nn.Module):

  def __init__(self, cfg: VAEConfig, act):
    super().__init__()
    self.blocks = nn.ModuleList([ResBlock(cfg.width, d, act) for d in cfg.dilations])
    self.conv = CausalConv1d(cfg.width, cfg.width, 3)

  def forward(self, x):
    for block in self.blocks:
      x = block(x)
    return self.conv(x.repeat_interleave(2, dim=1))


class Encoder(nn.Module):

  def __init__(self, cfg: VAEConfig, act):
    super().__init__()
    self.conv_in = CausalConv1d(cfg.input_dim, cfg.width, 3)
    self.stages = nn.ModuleList([EncoderStage(cfg, act) for _ in range(2)])
    self.conv_out = CausalConv1d(cfg.width, cfg.latent_dim, 3)
    self.act = act

  def forward(self, x):
    x = self.act(self.conv_in(x))
    for stage in self.stages:
      x = stage(x)
    return self.conv_out(x)


class Decoder(nn.Module):

  def __init__(self, cfg: VAEConfig, act):
    super().__init__()
    self.conv_in = CausalConv1d(cfg.latent_dim, cfg.width, 3)
    self.stages = nn.ModuleList([DecoderStage(cfg, act) for _ in range(2)])
    self.conv_mid = CausalConv1d(cfg.width, cfg.width, 3)
    self.conv_out = CausalConv1d(cfg.width, cfg.input_dim, 3)
    self.act = act

  def forward(self, z):
    x = self.act(self.conv_in(z))
    for stage in self.stages:
      x = stage(x)
    return self.conv_out(self.act(self.conv_mid(x)))


class MotionVAE(nn.Module):
  """encoder.*, decoder.* and the statistics buffers stats_{feature,latent}_{mean,std}."""

  def __init__(self, cfg: VAEConfig):
    super().__init__()
    self.cfg = cfg
    act = ACTIVATIONS[cfg.activation]
    self.encoder = Encoder(cfg, act)
    self.decoder = Decoder(cfg, act)

  def encode(self, x: torch.Tensor) -> torch.Tensor:
    """Normalised features [B,T,Cin] -> latents [B,ceil(T/4),C]; the end is padded to a
    multiple of 4 by repeating the last frame (motion_vae.pad_frames)."""
    if x.ndim != 3 or x.shape[-1] != self.cfg.input_dim:
      raise ValueError(f"VAE.encode expects normalised features [B,T,{self.cfg.input_dim}], "
                       f"got shape {tuple(x.shape)}.")
    t = x.shape[1]
    pad = -t % FRAMES_PER_LATENT
    if pad:
      x = torch.cat([x, x[:, -1:].expand(-1, pad, -1)], dim=1)
    return self.encoder(x.float())

  def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """Latents [B,K,C] -> normalised features [B,4K,Cin] (or the first `length` frames)."""
    if z.ndim != 3 or z.shape[-1] != self.cfg.latent_dim:
      raise ValueError(f"VAE.decode expects latents [B,K,{self.cfg.latent_dim}], "
                       f"got shape {tuple(z.shape)}.")
    out = self.decoder(z.float())
    return out if length is None else out[:, :length]
