"""The LLaMo in PyTorch: MoT Llama + [BOM]/[EOM] + latent adapter + flow head + exit head.

The twin of models/llamo.py (with models/mot.py, models/llama.py, models/attention.py,
models/flow_head.py), computed in float32. Parameter names follow transformers' Llama for
the text expert; see layout.py for the whole list. Routing is exact: each token runs the
expert of its modality (0 text, 1 motion) with no capacity limit (what
`models.llamo.for_inference` sets), attention is one causal, segment-masked GQA over the
interleaved sequence.

Dimension names: B batch, T length, S cache length, D model, N heads, K kv heads,
H head dim, C latent, W flow width, V vocab.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from llamo_jax.pytorch import layout
from llamo_jax.pytorch._torch import torch

nn = torch.nn
F = torch.nn.functional

TEXT, MOTION = 0, 1
FREQ_DIM = 256      # flow head: sinusoidal timestep features (models/flow_head.py)
TIME_SCALE = 1000.  # t in [0,1] embedded as t*1000


@dataclasses.dataclass(frozen=True)
class LLaMoConfig:
  """Shapes of the exported LLaMo (config.json's "llamo" section)."""
  vocab_size: int
  dim: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  ffn_dim: int
  norm_eps: float
  rope_theta: float
  rope_scaling: dict | None
  tie_embeddings: bool
  latent_dim: int
  split: str
  flow_width: int
  flow_depth: int
  bom_expert: str = "text"   # the expert that runs [BOM] (JAX LLaMoConfig.bom_expert)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> LLaMoConfig:
    missing = [k for k in layout.LLAMO_FIELDS if k not in d and k not in layout.LLAMO_DEFAULTS]
    if missing:
      raise ValueError(f"config.json's 'llamo' section lacks {missing}; re-export the model.")
    cfg = cls(**{k: d.get(k, layout.LLAMO_DEFAULTS.get(k)) for k in layout.LLAMO_FIELDS})
    if cfg.bom_expert not in layout.BOM_EXPERTS:
      raise ValueError(f"llamo.bom_expert={cfg.bom_expert!r} is not supported by the PyTorch LLaMo "
                       f"(supported: {layout.BOM_EXPERTS}).")
    if cfg.split not in layout.SPLITS:
      raise ValueError(f"llamo.split={cfg.split!r} is not supported by the PyTorch LLaMo "
                       f"(supported: {layout.SPLITS}).")
    if cfg.n_heads % cfg.n_kv_heads or cfg.head_dim % 2:
      raise ValueError(f"llamo n_heads={cfg.n_heads}, n_kv_heads={cfg.n_kv_heads}, "
                       f"head_dim={cfg.head_dim}: need n_heads % n_kv_heads == 0 and an even head_dim.")
    return cfg

  @property
  def bom_id(self) -> int:
    return self.vocab_size

  @property
  def eom_id(self) -> int:
    return self.vocab_size + 1


def rope_inv_freq(head_dim: int, theta: float, scaling: Mapping[str, float] | None) -> np.ndarray:
  """Inverse rotary frequencies [H/2] float32, with optional Llama-3 scaling (as attention.py)."""
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if scaling is not None:
    old_len = scaling["original_max_position_embeddings"]
    low, high, factor = scaling["low_freq_factor"], scaling["high_freq_factor"], scaling["factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    inv_freq = np.where(is_medium, smoothed, scaled)
  return inv_freq.astype(np.float32)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
  """x [B,T,heads,H] rotated by sin/cos [B,T,H] (HF rotate_half layout)."""
  x1, x2 = x.chunk(2, dim=-1)
  return x * cos[:, :, None] + torch.cat([-x2, x1], dim=-1) * sin[:, :, None]


class RMSNorm(nn.Module):

  def __init__(self, dim: int, eps: float):
    super().__init__()
    self.weight = nn.Parameter(torch.ones(dim))
    self.eps = eps

  def forward(self, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelfAttn(nn.Module):

  def __init__(self, cfg: LLaMoConfig):
    super().__init__()
    d, n, k, h = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    self.q_proj = nn.Linear(d, n * h, bias=False)
    self.k_proj = nn.Linear(d, k * h, bias=False)
    self.v_proj = nn.Linear(d, k * h, bias=False)
    self.o_proj = nn.Linear(n * h, d, bias=False)


class MLP(nn.Module):

  def __init__(self, cfg: LLaMoConfig):
    super().__init__()
    self.gate_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
    self.up_proj = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
    self.down_proj = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

  def forward(self, x):
    return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Expert(nn.Module):
  """One modality's weights of one layer (transformers' LlamaDecoderLayer names)."""

  def __init__(self, cfg: LLaMoConfig):
    super().__init__()
    self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
    self.self_attn = SelfAttn(cfg)
    self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
    self.mlp = MLP(cfg)

  def qkv(self, h):
    """h [n,D] -> [n, (N+2K)*H] (q | k | v)."""
    x = self.input_layernorm(h)
    a = self.self_attn
    return torch.cat([a.q_proj(x), a.k_proj(x), a.v_proj(x)], dim=-1)

  def attn_out(self, a):
    return self.self_attn.o_proj(a)

  def ffn(self, h):
    return self.mlp(self.post_attention_layernorm(h))


def dispatch(is_motion: torch.Tensor, f_text, f_motion, x: torch.Tensor) -> torch.Tensor:
  """f_text on the text tokens of x [B,T,...], f_motion on the motion ones, in sequence order."""
  if not bool(is_motion.any()):
    return f_text(x)
  if bool(is_motion.all()):
    return f_motion(x)
  y_text, y_motion = f_text(x[~is_motion]), f_motion(x[is_motion])
  out = y_text.new_empty(x.shape[:2] + y_text.shape[1:])
  out[~is_motion] = y_text
  out[is_motion] = y_motion
  return out


@dataclasses.dataclass
class KVCache:
  """Keys (rotated) and values per layer [B,S,K,H] and the segment id of every slot [B,S]."""
  k: list
  v: list
  segment_ids: torch.Tensor

  @property
  def length(self) -> int:
    return self.segment_ids.shape[1]


class Backbone(nn.Module):
  """embed_tokens, layers (text expert), motion_layers (motion expert), norm."""

  def __init__(self, cfg: LLaMoConfig):
    super().__init__()
    self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
    self.layers = nn.ModuleList([Expert(cfg) for _ in range(cfg.n_layers)])
    self.motion_layers = nn.ModuleList([Expert(cfg) for _ in range(cfg.n_layers)])
    self.norm = RMSNorm(cfg.dim, cfg.norm_eps)


class Linear(nn.Module):
  """y = x @ W^T + b (the flow/exit heads' Linear; weight [out,in])."""

  def __init__(self, d_in: int, d_out: int):
    super().__init__()
    self.weight = nn.Parameter(torch.zeros(d_out, d_in))
    self.bias = nn.Parameter(torch.zeros(d_out))

  def forward(self, x):
    return F.linear(x, self.weight, self.bias)


def _layer_norm(x, eps: float = 1e-6):
  mean = x.mean(-1, keepdim=True)
  var = (x - mean).pow(2).mean(-1, keepdim=True)
  return (x - mean) * torch.rsqrt(var + eps)


class AdaLNResBlock(nn.Module):

  def __init__(self, width: int):
    super().__init__()
    self.fc1 = Linear(width, width)
    self.fc2 = Linear(width, width)
    self.modulation = Linear(width, 3 * width)

  def forward(self, x, mod):
    shift, scale, gate = mod.chunk(3, dim=-1)
    y = _layer_norm(x) * (1 + scale) + shift
    return x + gate * self.fc2(F.silu(self.fc1(y)))


def timestep_features(t: torch.Tensor, dim: int = FREQ_DIM) -> torch.Tensor:
  """t [...] in [0,1] -> [..., dim] (cos | sin)."""
  half = dim // 2
  freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
  args = (t.float() * TIME_SCALE)[..., None] * freqs
  return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FlowHead(nn.Module):
  """Velocity field f(x_t [...,C], t [...], h [...,D]) -> v [...,C] (models/flow_head.py)."""

  def __init__(self, latent_dim: int, cond_dim: int, width: int, depth: int):
    super().__init__()
    self.latent_dim = latent_dim
    self.time_fc1 = Linear(FREQ_DIM, width)
    self.time_fc2 = Linear(width, width)
    self.cond_proj = Linear(cond_dim, width)
    self.in_proj = Linear(latent_dim, width)
    self.blocks = nn.ModuleList([AdaLNResBlock(width) for _ in range(depth)])
    self.final_modulation = Linear(width, 2 * width)
    self.out_proj = Linear(width, latent_dim)

  def time_embedding(self, t):
    return self.time_fc2(F.silu(self.time_fc1(timestep_features(t))))

  def modulations(self, c):
    c = F.silu(c)
    return [block.modulation(c) for block in self.blocks] + [self.final_modulation(c)]

  def velocity(self, x, mods):
    y = self.in_proj(x)
    for block, mod in zip(self.blocks, mods):
      y = block(y, mod)
    shift, scale = mods[-1].chunk(2, dim=-1)
    return self.out_proj(_layer_norm(y) * (1 + scale) + shift)

  def forward(self, x, t, h):
    return self.velocity(x, self.modulations(self.time_embedding(t) + self.cond_proj(h)))


METHODS = ("euler", "heun")


def integrate_head(head: FlowHead, h: torch.Tensor, x0: torch.Tensor, *,
                   h_uncond: torch.Tensor | None = None, cfg_scale: float = 1.0, steps: int = 50,
                   method: str = "euler") -> torch.Tensor:
  """Integrates dx/dt = v(x,t) from 0 to 1 (Euler/Heun), CFG v_u + w (v_c - v_u) when
  h_uncond is given; the conditioning half runs once for the whole grid (flow_head.integrate_head)."""
  if method not in METHODS:
    raise ValueError(f"ODE method {method!r} is not one of {METHODS}.")
  if steps < 1:
    raise ValueError(f"ODE steps must be >= 1, got {steps}.")
  guided = h_uncond is not None
  if guided:
    h = torch.stack([h, h_uncond])
  dt = 1.0 / steps
  t = torch.arange(steps + 1, dtype=torch.float32) * dt
  temb = head.time_embedding(t).reshape((steps + 1,) + (1,) * (h.ndim - 1) + (-1,))
  mods = head.modulations(temb + head.cond_proj(h)[None])

  def velocity(x, i):
    v = head.velocity(torch.stack([x, x]) if guided else x, [m[i] for m in mods])
    return v[1] + cfg_scale * (v[0] - v[1]) if guided else v

  x = x0.float()
  for i in range(steps):
    v1 = velocity(x, i)
    if method == "euler":
      x = x + dt * v1
    else:
      v2 = velocity(x + dt * v1, i + 1)
      x = x + 0.5 * dt * (v1 + v2)
  return x


class LLaMo(nn.Module):
  """The unified motion-language model (models/llamo.py), float32."""

  def __init__(self, cfg: LLaMoConfig):
    super().__init__()
    self.config = cfg
    self.model = Backbone(cfg)
    if not cfg.tie_embeddings:
      self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
    self.special_embed = nn.Embedding(2, cfg.dim)
    self.motion_in = nn.Linear(cfg.latent_dim, cfg.dim, bias=False)
    self.flow_head = FlowHead(cfg.latent_dim, cfg.dim, cfg.flow_width, cfg.flow_depth)
    self.exit_head = Linear(cfg.dim, 1)
    self.register_buffer("inv_freq", torch.from_numpy(rope_inv_freq(
        cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)), persistent=False)

  def embed_inputs(self, tokens, latents, modality):
    """Token/[BOM]/[EOM] embeddings at text positions, adapted latents at motion ones -> [B,T,D]."""
    v = self.config.vocab_size
    text = self.model.embed_tokens(tokens.clamp(0, v - 1))
    special = self.special_embed((tokens - v).clamp(0, 1))
    text = torch.where((tokens >= v)[..., None], special, text)
    motion = self.motion_in(latents.float())
    return torch.where((modality == MOTION)[..., None], motion, text)

  def _layer(self, i: int, h, is_motion, sin, cos, mask, cache: KVCache | None):
    cfg = self.config
    text, motion = self.model.layers[i], self.model.motion_layers[i]
    b, t, _ = h.shape
    n, k, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    if cfg.split == "all":
      qkv = dispatch(is_motion, text.qkv, motion.qkv, h)
    else:
      qkv = text.qkv(h)
    q, kk, vv = qkv.split([n * hd, k * hd, k * hd], dim=-1)
    q = apply_rope(q.reshape(b, t, n, hd), sin, cos)
    kk = apply_rope(kk.reshape(b, t, k, hd), sin, cos)
    vv = vv.reshape(b, t, k, hd)
    if cache is not None:
      kk = torch.cat([cache.k[i], kk], dim=1)
      vv = torch.cat([cache.v[i], vv], dim=1)
      cache.k[i], cache.v[i] = kk, vv
    rep = n // k
    a = F.scaled_dot_product_attention(
        q.transpose(1, 2), kk.repeat_interleave(rep, dim=2).transpose(1, 2),
        vv.repeat_interleave(rep, dim=2).transpose(1, 2), attn_mask=mask)
    a = a.transpose(1, 2).reshape(b, t, n * hd)
    if cfg.split == "all":
      h = h + dispatch(is_motion, text.attn_out, motion.attn_out, a)
    else:
      h = h + text.attn_out(a)
    return h + dispatch(is_motion, text.ffn, motion.ffn, h)

  def forward(self, tokens: torch.Tensor, latents: torch.Tensor, modality: torch.Tensor,
              positions: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
              cache: KVCache | None = None):
    """tokens [B,T], latents [B,T,C], modality [B,T] -> (logits [B,T,V], h [B,T,D], cache).

    h is the final-normed hidden state. With `cache` (from `init_cache`) the new keys are
    appended to it (in place) and the queries attend the whole cache.
    """
    b, t = tokens.shape
    if latents.shape != (b, t, self.config.latent_dim):
      raise ValueError(f"latents have shape {tuple(latents.shape)}; expected [B,T,C]="
                       f"{(b, t, self.config.latent_dim)}.")
    start = 0 if cache is None else cache.length
    if positions is None:
      positions = (start + torch.arange(t)).expand(b, t)
    if segment_ids is None:
      segment_ids = torch.ones(b, t, dtype=torch.long)
    freqs = positions.float()[..., None] * self.inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    sin, cos = torch.sin(emb), torch.cos(emb)
    if cache is not None:
      cache.segment_ids = torch.cat([cache.segment_ids, segment_ids.to(cache.segment_ids)], dim=1)
      k_seg = cache.segment_ids
    else:
      k_seg = segment_ids
    s = k_seg.shape[1]
    causal = torch.arange(s)[None, :] <= (start + torch.arange(t))[:, None]
    mask = (causal[None] & (segment_ids[:, :, None] == k_seg[:, None, :]))[:, None]
    is_motion = modality == MOTION
    if self.config.bom_expert == "motion":  # [BOM] runs the motion expert (its embedding stays text-side)
      is_motion = is_motion | (tokens == self.config.bom_id)
    h = self.embed_inputs(tokens, latents, modality)
    for i in range(self.config.n_layers):
      h = self._layer(i, h, is_motion, sin, cos, mask, cache)
    h = self.model.norm(h)
    return self.logits(h), h, cache

  def logits(self, h):
    """h [...,D] -> text logits [...,V] over the base vocabulary."""
    w = self.model.embed_tokens.weight if self.config.tie_embeddings else self.lm_head.weight
    return F.linear(h, w)

  def exit_logits(self, h):
    """h [...,D] -> logit [...] that this motion token is the last one."""
    return self.exit_head(h)[..., 0]

  def init_cache(self, batch: int) -> KVCache:
    """An empty KV cache for `batch` sequences."""
    cfg = self.config
    empty = torch.zeros(batch, 0, cfg.n_kv_heads, cfg.head_dim)
    return KVCache([empty] * cfg.n_layers, [empty] * cfg.n_layers,
                   torch.zeros(batch, 0, dtype=torch.long))
