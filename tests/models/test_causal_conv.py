"""Causal conv: left-only padding, causality per stride, chunked (streaming) == full."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.models.causal_conv import CausalConv1d


def _conv(k, stride=1, dilation=1, cin=3, cout=5, seed=0):
  return CausalConv1d(cin, cout, k, stride=stride, dilation=dilation, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("k,stride,dilation,pad", [(3, 1, 1, 2), (3, 1, 9, 18), (4, 2, 1, 2),
                                                   (1, 1, 1, 0)])
def test_pad_and_output_length(k, stride, dilation, pad):
  conv = _conv(k, stride, dilation)
  assert conv.pad == pad  # (k-1)*d + 1 - stride
  y, state = conv(jnp.ones((2, 12, 3)))
  assert y.shape == (2, 12 // stride, 5)
  assert state.shape == (2, pad, 3)


def test_matches_zero_left_padded_convolution():
  conv = _conv(3, stride=2, dilation=2)
  x = jax.random.normal(jax.random.key(0), (2, 10, 3))
  y, _ = conv(x)
  # Reference: numpy loop over output steps, zero padding of `pad` on the left.
  kern = np.asarray(conv.conv.kernel[...])
  bias = np.asarray(conv.conv.bias[...])
  xp = np.concatenate([np.zeros((2, conv.pad, 3)), np.asarray(x)], axis=1)
  ref = np.stack([sum(xp[:, 2 * j + i * 2] @ kern[i] for i in range(3)) + bias
                  for j in range(5)], axis=1)
  np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5)


@pytest.mark.parametrize("stride,dilation", [(1, 3), (2, 1)])
def test_causality(stride, dilation):
  conv = _conv(4 if stride == 2 else 3, stride, dilation)
  run = jax.jit(lambda x: conv(x)[0])
  x = np.random.default_rng(1).normal(size=(1, 16, 3)).astype(np.float32)
  y = np.asarray(run(x))
  for j in range(16 // stride - 1):
    last_input = stride * j + stride - 1  # output j may read inputs <= last_input only
    future = x.copy()
    future[:, last_input + 1:] += 10.0
    y_future = np.asarray(run(future))
    np.testing.assert_array_equal(y_future[:, :j + 1], y[:, :j + 1])
    present = x.copy()
    present[:, last_input] += 10.0
    assert not np.allclose(np.asarray(run(present))[:, j], y[:, j])


@pytest.mark.parametrize("stride,chunks", [(1, [1, 3, 2, 6]), (2, [2, 4, 2, 4])])
def test_chunked_equals_full(stride, chunks):
  conv = _conv(4 if stride == 2 else 3, stride, dilation=2)
  x = jax.random.normal(jax.random.key(2), (2, sum(chunks), 3))
  full, _ = conv(x)
  state, outs, start = conv.init_state(2), [], 0
  for n in chunks:
    y, state = conv(x[:, start:start + n], state)
    outs.append(y)
    start += n
  np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)), np.asarray(full), atol=1e-6)


def test_rejects_chunk_not_multiple_of_stride():
  with pytest.raises(ValueError, match="multiple of the stride"):
    _conv(4, stride=2)(jnp.ones((1, 3, 3)))


def test_rejects_kernel_too_small_for_stride():
  with pytest.raises(ValueError, match="too small"):
    _conv(1, stride=2)
