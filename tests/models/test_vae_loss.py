"""VAE loss: each term's behaviour, masking, weights, and the differentiable joint path."""
import dataclasses
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.models.motion_vae import VAEOutput
from llamo_jax.models.vae_loss import VAELoss, VAELossConfig, latent_mask

HAS_REPRESENTATION = importlib.util.find_spec("llamo_jax.motion.representation") is not None


def stand_in_to_joints(f):
  """A differentiable hml263-like features -> joints [...,T,22,3]: integrate yaw and root
  velocity, rotate the root-relative joints by the yaw (a stand-in for the real path)."""
  yaw = jnp.cumsum(f[..., 0], axis=-1)
  root = jnp.cumsum(f[..., 1:4], axis=-2)
  local = f[..., 4:67].reshape(f.shape[:-1] + (21, 3))
  c, s = jnp.cos(yaw)[..., None], jnp.sin(yaw)[..., None]
  x = c * local[..., 0] + s * local[..., 2]
  z = -s * local[..., 0] + c * local[..., 2]
  rel = jnp.stack([x, local[..., 1], z], axis=-1)
  return jnp.concatenate([root[..., None, :], root[..., None, :] + rel], axis=-2)


def _loss(cfg=VAELossConfig(), dim=263, to_joints=stand_in_to_joints):
  """The loss, jitted: one compile per test instead of one per eager op and shape."""
  fn = VAELoss(cfg, np.zeros(dim), np.ones(dim), to_joints=to_joints)
  return jax.jit(lambda out, target, mask: fn(out, target, mask))


def _out(recon, mean=None, indices=None):
  b, t, _ = recon.shape
  mean = np.zeros((b, -(-t // 4), 8), np.float32) if mean is None else mean
  return VAEOutput(recon=recon, mean=mean, latent=mean, indices=indices)


def _target(b=2, t=10, dim=263, seed=0):
  return (0.3 * np.random.default_rng(seed).normal(size=(b, t, dim))).astype(np.float32)


def test_zero_reconstruction_terms_when_output_equals_input():
  x = _target()
  mask = np.ones(x.shape[:2], bool)
  loss, m = _loss()(_out(x), x, mask)
  for name in ("recon", "root", "joints", "mpjpe_mm", "kl", "loss"):
    assert float(m[name]) == 0.0, name
  assert float(loss) == 0.0


@pytest.mark.parametrize("kind,small,large", [("smooth_l1", 0.125, 1.5), ("l2", 0.25, 4.0)])
def test_recon_kinds(kind, small, large):
  x = np.zeros((2, 10, 263), np.float32)
  fn = _loss(VAELossConfig(recon=kind, w_joints=0.0))
  mask = np.ones((2, 10))
  assert np.isclose(float(fn(_out(x + 0.5), x, mask)[1]["recon"]), small)
  assert np.isclose(float(fn(_out(x + 2.0), x, mask)[1]["recon"]), large)


@pytest.mark.parametrize("rep,root_dims", [("hml263", 4), ("mm272", 8)])
def test_root_term_covers_exactly_the_root_dims(rep, root_dims):
  dim = 263 if rep == "hml263" else 272
  fn = _loss(VAELossConfig(representation=rep, w_joints=0.0), dim=dim)
  x = _target(dim=dim)
  mask = np.ones(x.shape[:2])
  last_root, first_other = x.copy(), x.copy()
  last_root[..., root_dims - 1] += 1.0
  first_other[..., root_dims] += 1.0
  assert float(fn(_out(last_root), x, mask)[1]["root"]) > 0
  _, m = fn(_out(first_other), x, mask)
  assert float(m["root"]) == 0.0 and float(m["recon"]) > 0


def test_root_weight_scales_the_root_term():
  x = _target()
  out, mask = _out(x + 0.1 * _target(seed=1)), np.ones(x.shape[:2])
  base = VAELossConfig(w_joints=0.0)
  loss7, m = _loss(base)(out, x, mask)
  loss14, _ = _loss(dataclasses.replace(base, w_root=14.0))(out, x, mask)
  loss0, _ = _loss(dataclasses.replace(base, w_root=0.0))(out, x, mask)
  assert float(m["root"]) > 0
  np.testing.assert_allclose(float(loss14 - loss7), 7.0 * float(m["root"]), rtol=1e-5)
  np.testing.assert_allclose(float(loss7 - loss0), 7.0 * float(m["root"]), rtol=1e-5)


def test_masked_frames_do_not_count():
  x = _target(t=12)
  mask = np.ones((2, 12), bool)
  mask[0, 7:] = False
  pred = x + 0.1
  fn = _loss()
  clean = fn(_out(pred), x, mask)[1]
  pred[0, 7:] += 100.0
  garbage = fn(_out(pred), x, mask)[1]
  for name in ("recon", "root", "joints"):
    np.testing.assert_allclose(float(garbage[name]), float(clean[name]), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(latent_mask(mask, 3)),
                                [[True, True, False], [True, True, True]])
  np.testing.assert_array_equal(np.asarray(latent_mask(mask[:, :10], 3)),
                                [[True, True, False], [True, True, True]])


def test_kl_is_half_mean_square_of_valid_latents_and_absent_for_fsq():
  x = _target(t=8)
  mean = np.stack([np.full((2, 8), 2.0), np.full((2, 8), 1.0)]).astype(np.float32)
  mean[0, 1] = 50.0  # latent 1 of example 0 covers only masked frames
  mask = np.ones((2, 8), bool)
  mask[0, 4:] = False
  fn = _loss()
  _, m = fn(_out(x, mean), x, mask)
  np.testing.assert_allclose(float(m["kl"]), 0.5 * (4.0 + 1.0 + 1.0) / 3, rtol=1e-6)
  _, m_fsq = fn(_out(x, mean, indices=np.zeros((2, 2), np.int32)), x, mask)
  assert float(m_fsq["kl"]) == 0.0


def _check_joint_term_differentiable(fn, x, mask):
  pred = x + 0.05 * _target(x.shape[0], x.shape[1], x.shape[2], seed=3)

  def joints_term(p):
    return fn(_out(p), x, mask)[1]["joints"]

  value, grads = jax.jit(jax.value_and_grad(joints_term))(pred)
  assert float(value) > 0
  assert np.all(np.isfinite(np.asarray(grads))) and float(np.abs(np.asarray(grads)).sum()) > 0
  assert float(jax.jit(joints_term)(x)) < 1e-6  # zero up to float fusion differences


def test_joint_term_is_differentiable_with_a_stand_in():
  x = _target()
  _check_joint_term_differentiable(_loss(), x, np.ones(x.shape[:2]))


@pytest.mark.skipif(not HAS_REPRESENTATION,
                    reason="llamo_jax.motion.representation (helper C) has not landed yet")
def test_joint_term_through_the_real_hml263_path(humanml3d_clip):
  feature_mean = np.load(humanml3d_clip / "Mean.npy")
  feature_std = np.load(humanml3d_clip / "Std.npy")
  fn = VAELoss(VAELossConfig(), feature_mean, feature_std)
  feats = np.load(humanml3d_clip / "new_joint_vecs_012314.npy")[:24]
  x = jnp.asarray((feats - feature_mean) / feature_std, jnp.float32)[None]
  _check_joint_term_differentiable(fn, x, np.ones((1, 24)))


@pytest.mark.skipif(not HAS_REPRESENTATION,
                    reason="llamo_jax.motion.representation (helper C) has not landed yet")
def test_joint_term_through_the_real_mm272_path():
  x = 0.05 * np.random.default_rng(4).normal(size=(1, 12, 272)).astype(np.float32)
  x[..., 2:8] = [1.0, 0, 0, 0, 1.0, 0]  # heading change: identity 6D
  fn = VAELoss(VAELossConfig(representation="mm272"), np.zeros(272), np.ones(272))
  _check_joint_term_differentiable(fn, x, np.ones((1, 12)))


def test_config_and_input_errors():
  assert VAELossConfig.from_dict({"w_root": 7, "recon": "l2"}) == VAELossConfig(w_root=7.0,
                                                                               recon="l2")
  with pytest.raises(ValueError, match=r"Unknown VAELossConfig keys \['w_rot'\]"):
    VAELossConfig.from_dict({"w_rot": 1.0})
  with pytest.raises(ValueError, match="representation"):
    VAELossConfig(representation="smpl")
  with pytest.raises(ValueError, match="recon"):
    VAELossConfig(recon="l3")
  with pytest.raises(ValueError, match="feature_mean and feature_std"):
    VAELoss(VAELossConfig())
  with pytest.raises(ValueError, match="263 dims"):
    VAELoss(VAELossConfig(), np.zeros(272), np.ones(272), to_joints=stand_in_to_joints)
  with pytest.raises(ValueError, match="NaN"):
    VAELoss(VAELossConfig(), np.full(263, np.nan), np.ones(263), to_joints=stand_in_to_joints)
  x = _target()
  with pytest.raises(ValueError, match=r"\[B,T,263\]"):
    _loss()(_out(x[..., :200]), x[..., :200], np.ones((2, 10)))
  with pytest.raises(ValueError, match="mask"):
    _loss()(_out(x), x, np.ones((2, 9)))
