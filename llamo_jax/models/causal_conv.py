"""Causal 1D convolution over time, with an explicit streaming state.

A causal convolution (kernel k, dilation d, stride s) pads only on the left, by
`p = (k-1)*d + 1 - s` steps, so output step j reads inputs j*s - p .. j*s + s - 1:
with s=1 output t depends only on inputs <= t, with s=2 output t on inputs <= 2t+1.
For an input of length T (a multiple of s) there are T/s outputs.

Streaming: the left padding IS the state. `conv(x, state)` prepends `state`
(the last p inputs seen, [B,p,Cin]; zeros at the start, which is the offline
zero padding) to the chunk x [B,n,Cin], runs a VALID convolution and returns the
new state, the last p steps of that concatenation. The offline pass is the same
call with a zero state and the whole sequence as one chunk, so a sequence fed
chunk by chunk gives exactly the offline outputs, provided every chunk's length
is a multiple of the stride.

Dimension names: B batch, T length, C channels.
"""
from __future__ import annotations

from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp


def REPLICATED(ndim: int) -> dict:  # pylint: disable=invalid-name
  """Param metadata saying "replicate on every mesh axis": the VAE is small (a few M params),
  so data parallelism is all it needs (llamo_jax.sharding requires every Param to say)."""
  return {"out_sharding": (None,) * ndim, "eager_sharding": False}


class CausalConv1d(nnx.Module):
  """A left-padded (causal) 1D convolution over [B,T,Cin] -> [B,T/stride,Cout].

  Params: conv.kernel [k,Cin,Cout], conv.bias [Cout].
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *,
               stride: int = 1, dilation: int = 1, rngs: nnx.Rngs,
               dtype: Any = jnp.float32, param_dtype: Any = jnp.float32,
               precision: Any = None):
    self.pad = (kernel_size - 1) * dilation + 1 - stride
    if self.pad < 0:
      raise ValueError(f"CausalConv1d: kernel_size={kernel_size}, dilation={dilation} is too "
                       f"small for stride={stride} (needs (k-1)*d + 1 >= stride).")
    self.in_features = in_features
    self.out_features = out_features
    self.stride = stride
    self.dtype = dtype
    self.conv = nnx.Conv(in_features, out_features, (kernel_size,), strides=(stride,),
                         kernel_dilation=(dilation,), padding="VALID", dtype=dtype,
                         param_dtype=param_dtype, precision=precision, rngs=rngs,
                         kernel_metadata=REPLICATED(3), bias_metadata=REPLICATED(1))

  def init_state(self, batch: int) -> jax.Array:
    """The state before any input: p zero steps [B,p,Cin] in the compute dtype
    (= the offline left padding)."""
    return jnp.zeros((batch, self.pad, self.in_features), self.dtype)

  def __call__(self, x: jax.Array, state: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """x [B,n,Cin] (n a multiple of the stride), state [B,p,Cin] or None (start of
    the sequence) -> (y [B,n/stride,Cout], new state [B,p,Cin])."""
    if x.shape[1] % self.stride:
      raise ValueError(f"CausalConv1d with stride {self.stride} got a chunk of {x.shape[1]} "
                       f"steps; chunks must be a multiple of the stride.")
    if state is None:
      state = self.init_state(x.shape[0])
    # The state lives in the compute dtype, so a scanned/jitted stream keeps one carry type.
    xp = jnp.concatenate([state.astype(self.dtype), x.astype(self.dtype)], axis=1)
    return self.conv(xp), xp[:, x.shape[1]:]
