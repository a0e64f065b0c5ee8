"""Llama building blocks: RMSNorm, embedding, einsum projections, the Expert.

Every parameter is created already stacked over layers where it belongs to a
block ([L, ...], logical axis "layers"), carries logical axis names as NNX
sharding metadata (`out_sharding`), and is stored in `param_dtype`; compute
happens in `dtype`. Eager sharding is off: the model is built unsharded or
through `llamo_jax.sharding.create_sharded`, which places it from the names.

Dimension names: B batch, T length, D model, N heads, K kv heads, H head dim,
F ffn, V vocab, L layers.
"""
from __future__ import annotations

from typing import Any, Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from llamo_jax.core import sharding

INIT_STD = 0.02  # HF Llama's initializer_range.


def make_param(rngs: nnx.Rngs | None, shape: Sequence[int], axes: Sequence[str | None],
               param_dtype: Any, *, init: str = "normal") -> nnx.Param:
  """A Param with logical axis names; init "normal" (std 0.02) or "ones"."""
  if len(shape) != len(axes):
    raise ValueError(f"shape {tuple(shape)} and logical axes {tuple(axes)} differ in rank.")
  if init == "ones":
    value = jnp.ones(shape, param_dtype)
  else:
    value = INIT_STD * jax.random.normal(rngs.params(), shape, param_dtype)
  return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


@jax.tree_util.register_pytree_node_class
class PerLayer:
  """A stacked block param [L, ...] held as L arrays, one per layer (`sampling_blocks`).

  `run_blocks` then runs the layers in a python loop that reads each layer's
  array where it lies: XLA on CPU neither fuses a layer slice of the stack into
  its bfloat16 matmul nor runs that matmul fast inside lax.scan.
  """

  def __init__(self, arrays: Sequence[jax.Array]):
    self.arrays = tuple(arrays)

  def tree_flatten(self):
    return self.arrays, None

  @classmethod
  def tree_unflatten(cls, _, arrays):
    return cls(arrays)


def sampling_blocks(state: nnx.State, dtype: str) -> nnx.State:
  """A stacked block state (`nnx.split(blocks)[1]`) for inference with its matmuls in `dtype`.

  "float32" returns `state` itself. "bfloat16" returns every param as a PerLayer
  whose projection kernels are bfloat16 (norm scales stay as they are): a float32
  model merged from it multiplies with bfloat16 operands and float32 accumulation
  (`Dense`), everything else in float32. Cast once, outside jit. Inference only.
  """
  if dtype == "float32":
    return state
  if dtype != "bfloat16":
    raise ValueError(f"block matmul dtype {dtype!r} is not float32 or bfloat16.")

  def split(path, leaf):
    if "kernel" in [getattr(k, "key", None) for k in path]:
      leaf = leaf.astype(jnp.bfloat16)
    return PerLayer(list(leaf))

  return jax.tree_util.tree_map_with_path(split, state)


def _stacked(n_layers: int | None, shape, axes):
  if n_layers is None:
    return tuple(shape), tuple(axes)
  return (n_layers, *shape), ("layers", *axes)


class RMSNorm(nnx.Module):
  """x / rms(x) * scale, normalised in float32 (as HF LlamaRMSNorm)."""

  def __init__(self, dim: int, *, eps: float, n_layers: int | None = None,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32):
    shape, axes = _stacked(n_layers, (dim,), ("embed",))
    self.scale = make_param(None, shape, axes, param_dtype, init="ones")
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return x32.astype(self.dtype) * self.scale[...].astype(self.dtype)


class Embed(nnx.Module):
  """Token embedding table [V,D]; `attend` gives tied-embedding logits."""

  def __init__(self, vocab_size: int, dim: int, *, rngs: nnx.Rngs,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32):
    self.embedding = make_param(rngs, (vocab_size, dim), ("vocab", "embed"), param_dtype)
    self.dtype = dtype

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens [B,T] int -> [B,T,D] in the compute dtype."""
    # Gather the fsdp-sharded model dim first (the FSDP all-gather), so the
    # lookup only has to split over vocab; GSPMD otherwise replicates it all.
    table = sharding.constrain(self.embedding[...], ("vocab", None))
    return jnp.take(table, tokens, axis=0).astype(self.dtype)

  def attend(self, h: jax.Array) -> jax.Array:
    """h [B,T,D] -> logits [B,T,V] in float32."""
    return jnp.einsum("BTD,VD->BTV", h.astype(self.dtype),
                      self.embedding[...].astype(self.dtype),
                      preferred_element_type=jnp.float32)


class Dense(nnx.Module):
  """A bias-free projection `einsum(equation, x, kernel)`; kernel [*shape]."""

  def __init__(self, equation: str, shape: Sequence[int], axes: Sequence[str | None], *,
               rngs: nnx.Rngs, n_layers: int | None = None, dtype: Any = jnp.float32,
               param_dtype: Any = jnp.float32):
    shape, axes = _stacked(n_layers, shape, axes)
    self.kernel = make_param(rngs, shape, axes, param_dtype)
    self.equation = equation
    self.dtype = dtype

  def __call__(self, x: jax.Array, *, out_dtype: Any = None) -> jax.Array:
    kernel = self.kernel[...]
    if kernel.dtype == jnp.bfloat16 and self.dtype == jnp.float32:
      # A float32 model with bfloat16 kernels (`sampling_blocks`): bfloat16
      # operands, float32 accumulation and output. XLA's CPU dot runs a single
      # row (x [1,1,...]) 2-3x slower in bfloat16 than in float32, and two rows
      # faster: one row is computed as two.
      one_row = x.shape[:2] == (1, 1)
      xb = x.astype(jnp.bfloat16)
      y = jnp.einsum(self.equation, jnp.concatenate([xb, xb]) if one_row else xb, kernel,
                     preferred_element_type=jnp.float32 if out_dtype is None else out_dtype)
      return y[:1] if one_row else y
    return jnp.einsum(self.equation, x.astype(self.dtype), kernel.astype(self.dtype),
                      preferred_element_type=out_dtype)


class Expert(nnx.Module):
  """One modality's block weights: norms, q/k/v/o and the SwiGLU FFN.

  Built stacked over `n_layers` (leading L on every param); the methods run ONE
  layer, i.e. on the per-layer slice the backbone scans or indexes out.
  Attention itself lives in `attention.attention`, shared by all experts.
  """

  def __init__(self, *, dim: int, n_heads: int, n_kv_heads: int, head_dim: int,
               ffn_dim: int, norm_eps: float, n_layers: int | None, rngs: nnx.Rngs,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32):
    kw = dict(rngs=rngs, n_layers=n_layers, dtype=dtype, param_dtype=param_dtype)
    nkw = dict(eps=norm_eps, n_layers=n_layers, dtype=dtype, param_dtype=param_dtype)
    d, n, k, h, f = dim, n_heads, n_kv_heads, head_dim, ffn_dim
    self.attn_norm = RMSNorm(d, **nkw)
    self.q = Dense("BTD,DNH->BTNH", (d, n, h), ("embed", "heads", "head_dim"), **kw)
    self.k = Dense("BTD,DKH->BTKH", (d, k, h), ("embed", "kv_heads", "head_dim"), **kw)
    self.v = Dense("BTD,DKH->BTKH", (d, k, h), ("embed", "kv_heads", "head_dim"), **kw)
    self.o = Dense("BTNH,NHD->BTD", (n, h, d), ("heads", "head_dim", "embed"), **kw)
    self.mlp_norm = RMSNorm(d, **nkw)
    self.gate = Dense("BTD,DF->BTF", (d, f), ("embed", "mlp"), **kw)
    self.up = Dense("BTD,DF->BTF", (d, f), ("embed", "mlp"), **kw)
    self.down = Dense("BTF,FD->BTD", (f, d), ("mlp", "embed"), **kw)

  def qkv(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Residual stream h [B,T,D] -> attn_norm -> q [B,T,N,H], k, v [B,T,K,H]."""
    x = self.attn_norm(h)
    return self.q(x), self.k(x), self.v(x)

  def attn_out(self, a: jax.Array) -> jax.Array:
    """Attention output a [B,T,N,H] -> [B,T,D] (to add to the residual)."""
    return self.o(a)

  def ffn(self, h: jax.Array) -> jax.Array:
    """Residual stream h [B,T,D] -> mlp_norm -> SwiGLU -> [B,T,D]."""
    x = self.mlp_norm(h)
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))
