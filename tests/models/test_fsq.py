"""FSQ: grid values, straight-through gradient, codebook size and index round-trip."""
import itertools
import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.models import fsq

LEVELS = (8, 5, 5, 5)


def test_quantised_values_lie_on_the_grid_and_use_every_level():
  z = 3.0 * jax.random.normal(jax.random.key(0), (4096, len(LEVELS)))
  codes = np.asarray(fsq.quantize(z, LEVELS))
  for i, l in enumerate(LEVELS):
    h = l // 2
    ints = codes[:, i] * h
    np.testing.assert_allclose(ints, np.round(ints), atol=1e-5)
    assert set(np.round(ints).astype(int)) == set(range(-h, l - h))  # exactly l values
  assert np.all(np.abs(codes) <= 1.0)


def test_bound_maps_zero_to_zero():
  np.testing.assert_allclose(np.asarray(fsq.bound(jnp.zeros((len(LEVELS),)), LEVELS)), 0.0,
                             atol=1e-6)


def test_straight_through_gradient_is_identity():
  x = jnp.linspace(-3.0, 3.0, 13)
  np.testing.assert_array_equal(np.asarray(jax.grad(lambda v: fsq.round_ste(v).sum())(x)),
                                np.ones(13))
  assert not np.allclose(np.asarray(fsq.round_ste(x)), np.asarray(x))  # forward does round
  # Through the whole quantiser, rounding contributes identity: d quantize = d (bound / h).
  z = jax.random.normal(jax.random.key(1), (6, len(LEVELS)))
  w = jax.random.normal(jax.random.key(2), (6, len(LEVELS)))
  h = jnp.asarray([l // 2 for l in LEVELS], jnp.float32)
  g_q = jax.grad(lambda v: jnp.sum(w * fsq.quantize(v, LEVELS)))(z)
  g_ref = jax.grad(lambda v: jnp.sum(w * fsq.bound(v, LEVELS) / h))(z)
  np.testing.assert_allclose(np.asarray(g_q), np.asarray(g_ref), rtol=1e-6)


def test_codebook_size_and_index_round_trip():
  assert fsq.codebook_size(LEVELS) == math.prod(LEVELS) == 1000
  grid = np.array(list(itertools.product(*[range(-(l // 2), l - l // 2) for l in LEVELS])),
                  np.float32)
  codes = grid / np.array([l // 2 for l in LEVELS], np.float32)
  idx = np.asarray(fsq.codes_to_indices(jnp.asarray(codes), LEVELS))
  assert sorted(idx.tolist()) == list(range(1000))  # a bijection onto 0..prod-1
  np.testing.assert_allclose(np.asarray(fsq.indices_to_codes(jnp.asarray(idx), LEVELS)), codes,
                             atol=1e-6)


def test_module_projects_and_decodes_indices():
  q = fsq.FSQ(16, LEVELS, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(3), (2, 5, 16))
  latent, idx = q(z)
  assert latent.shape == (2, 5, 16) and idx.shape == (2, 5) and idx.dtype == jnp.int32
  assert q.codebook_size == 1000
  assert np.all((np.asarray(idx) >= 0) & (np.asarray(idx) < 1000))
  np.testing.assert_allclose(np.asarray(q.from_indices(idx)), np.asarray(latent), atol=1e-5)


@pytest.mark.parametrize("levels", [(), (1, 5), (8, 2.5)])
def test_bad_levels_raise(levels):
  with pytest.raises(ValueError, match="FSQ levels"):
    fsq.check_levels(levels)
