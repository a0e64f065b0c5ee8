"""Causal motion VAE: causality contract, streaming == offline, bottlenecks, config, training."""
import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llamo_jax.models import motion_vae as mv
from llamo_jax.models.vae_loss import VAELoss, VAELossConfig

# One shape set for every model here: eager init compiles per parameter shape.
SMALL = mv.MotionVAEConfig(input_dim=263, latent_dim=8, width=32, depth=3)


def _model(cfg=SMALL, seed=0):
  return mv.MotionVAE(cfg, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def model():
  return _model()


@pytest.fixture(scope="module")
def fsq_model():
  return _model(dataclasses.replace(SMALL, quantizer="fsq"))


_encode = nnx.jit(lambda m, x: m.encode(x))
_decode = nnx.jit(lambda m, z: m.decode(z))
_encode_step = nnx.jit(lambda m, s, f: m.encode_step(s, f))
_decode_step = nnx.jit(lambda m, s, z: m.decode_step(s, z))
_forward = nnx.jit(lambda m, x, key: m(x, noise_key=key))
_encode_lengths = nnx.jit(lambda m, x, lengths: m.encode(x, lengths))


def _frames(t, b=2, seed=0, dim=263):
  return jax.random.normal(jax.random.key(seed), (b, t, dim))


# ---------------------------------------------------------------- causality


def test_latent_k_depends_only_on_frames_up_to_4k_plus_3(model):
  x = np.asarray(_frames(24))  # perturbed in numpy: no per-slice eager compiles
  z = np.asarray(_encode(model, x))
  assert z.shape == (2, 6, 8)
  for k in range(5):
    future = x.copy()
    future[:, 4 * k + 4:] += 5.0
    z_future = np.asarray(_encode(model, future))
    np.testing.assert_allclose(z_future[:, :k + 1], z[:, :k + 1], atol=1e-6)
    assert not np.allclose(z_future[:, k + 1], z[:, k + 1], atol=1e-3)
    # ... and latent k does read frame 4k+3 (the bound is tight).
    edge = x.copy()
    edge[:, 4 * k + 3] += 5.0
    assert not np.allclose(np.asarray(_encode(model, edge))[:, k], z[:, k], atol=1e-3)


def test_decoded_frames_4k_to_4k_plus_3_depend_only_on_latents_up_to_k(model):
  z = np.asarray(jax.random.normal(jax.random.key(1), (2, 6, 8)))
  y = np.asarray(_decode(model, z))
  assert y.shape == (2, 24, 263)
  for k in range(5):
    future = z.copy()
    future[:, k + 1:] += 3.0
    y_future = np.asarray(_decode(model, future))
    np.testing.assert_allclose(y_future[:, :4 * (k + 1)], y[:, :4 * (k + 1)], atol=1e-6)
    for f in range(4 * (k + 1), 4 * (k + 2)):  # every frame of the perturbed latent changes
      assert not np.allclose(y_future[:, f], y[:, f], atol=1e-4)


# ---------------------------------------------------------------- streaming


def _stream_encode(m, x):
  xp = np.asarray(mv.pad_frames(x))
  state, out = m.init_encode_state(x.shape[0]), []
  for k in range(xp.shape[1] // 4):
    state, zk = _encode_step(m, state, xp[:, 4 * k:4 * k + 4])
    assert zk.shape == (x.shape[0], 1, m.cfg.latent_dim)
    out.append(zk)
  return jnp.concatenate(out, axis=1)


def _stream_decode(m, z):
  z = np.asarray(z)
  state, out = m.init_decode_state(z.shape[0]), []
  for k in range(z.shape[1]):
    state, frames = _decode_step(m, state, z[:, k:k + 1])
    assert frames.shape == (z.shape[0], 4, m.cfg.input_dim)
    out.append(frames)
  return jnp.concatenate(out, axis=1)


def test_streaming_equals_offline(model):
  t = 23  # not a multiple of 4; 6 steps, more than the dilation-9 convs' reach
  x = _frames(t, seed=t)
  z = _encode(model, x)
  assert z.shape[1] == -(-t // 4)
  np.testing.assert_allclose(np.asarray(_stream_encode(model, x)), np.asarray(z), atol=1e-5)
  y = _decode(model, z)[:, :t]
  np.testing.assert_allclose(np.asarray(_stream_decode(model, z)[:, :t]), np.asarray(y),
                             atol=1e-5)


def test_streaming_equals_offline_fsq(fsq_model):
  x = _frames(12, seed=3)
  z = _encode(fsq_model, x)
  np.testing.assert_allclose(np.asarray(_stream_encode(fsq_model, x)), np.asarray(z), atol=1e-5)
  np.testing.assert_allclose(np.asarray(_stream_decode(fsq_model, z)),
                             np.asarray(_decode(fsq_model, z)), atol=1e-5)


def test_streaming_steps_jit_as_pure_functions(model):
  graphdef, params = nnx.split(model)

  @jax.jit
  def step(params, state, frames):
    return nnx.merge(graphdef, params).encode_step(state, frames)

  x = _frames(6, seed=4)  # 6 frames: the second chunk is padded with the last frame
  s0 = model.init_encode_state(2)
  s1, z0 = step(params, s0, x[:, :4])
  _, z1 = step(params, s1, mv.pad_frames(x)[:, 4:])
  np.testing.assert_allclose(np.asarray(jnp.concatenate([z0, z1], 1)),
                             np.asarray(_encode(model, x)), atol=1e-5)
  # The state is a pytree of [B, (k-1)*d+1-stride, C] arrays that keeps its structure.
  assert jax.tree.structure(s1) == jax.tree.structure(s0)
  assert jax.tree.map(jnp.shape, s1) == jax.tree.map(jnp.shape, s0)
  assert jax.tree.map(lambda a: a.dtype, s1) == jax.tree.map(lambda a: a.dtype, s0)
  assert s0[0].shape == (2, 2, 263)  # conv_in: k=3 -> 2 frames of input features


def test_length_not_divisible_by_4_pads_with_last_frame(model):
  x = _frames(23, seed=5)
  padded = jnp.concatenate([x, x[:, -1:]], axis=1)
  np.testing.assert_array_equal(np.asarray(mv.pad_frames(x)), np.asarray(padded))
  np.testing.assert_allclose(np.asarray(_encode(model, x)), np.asarray(_encode(model, padded)),
                             atol=1e-6)
  with pytest.raises(ValueError, match="length=25 is not in 1..24"):
    model.decode(jnp.zeros((1, 6, 8)), 25)


def test_lengths_make_a_padded_batch_encode_like_the_clip_alone(model):
  batch = np.asarray(_frames(24, seed=6))  # example 0: 10 valid frames, then padding garbage
  z = _encode_lengths(model, batch, np.array([10, 24]))
  # The clip alone, padded as `encode` pads it: its last frame repeated.
  alone = batch.copy()
  alone[0, 10:] = batch[0, 9]
  np.testing.assert_allclose(np.asarray(z), np.asarray(_encode(model, alone)), atol=1e-6)
  assert not np.allclose(np.asarray(z[0, 2:]), np.asarray(_encode(model, batch)[0, 2:]), atol=1e-3)


# ---------------------------------------------------------------- bottlenecks


def test_training_noise_is_small_and_only_with_a_key(model):
  mean = jax.random.normal(jax.random.key(9), (8, 16, 8))
  clean, indices = model.bottleneck(mean)
  np.testing.assert_array_equal(np.asarray(clean), np.asarray(mean))
  assert indices is None
  noisy, _ = model.bottleneck(mean, jax.random.key(0))
  delta = np.asarray(noisy - mean)
  assert np.any(delta != 0)
  per_example_std = delta.reshape(8, -1).std(axis=1)
  assert np.all(per_example_std < SMALL.sigma_max * 1.2)  # sigma <= sigma_max
  assert per_example_std.max() > 2 * per_example_std.min()  # sigma drawn per example
  other, _ = model.bottleneck(mean, jax.random.key(1))
  assert not np.allclose(np.asarray(other), np.asarray(noisy))


def test_fsq_bottleneck_same_code_path(fsq_model):
  x = _frames(12, seed=10)
  out = _forward(fsq_model, x, jax.random.key(0))
  assert out.indices.shape == (2, 3)
  assert np.all((np.asarray(out.indices) >= 0) & (np.asarray(out.indices) < 1000))
  np.testing.assert_allclose(np.asarray(fsq_model.indices_to_latents(out.indices)),
                             np.asarray(out.latent), atol=1e-5)
  np.testing.assert_allclose(np.asarray(_encode(fsq_model, x)), np.asarray(out.latent), atol=1e-6)
  assert set(nnx.state(fsq_model, nnx.Param)) == {"encoder", "decoder", "fsq"}
  with pytest.raises(ValueError, match="FSQ model"):
    _model().indices_to_latents(out.indices)


# ---------------------------------------------------------------- config + errors


def test_config_round_trip_presets_and_errors():
  cfg = mv.get_preset("paper", input_dim=272, quantizer="fsq", fsq_levels=[8, 8, 8])
  assert cfg.width == 512 and cfg.latent_dim == 32 and cfg.fsq_levels == (8, 8, 8)
  assert mv.MotionVAEConfig.from_dict(cfg.to_dict()) == cfg
  assert mv.get_preset("tiny").width <= 128 and mv.MotionVAEConfig().dilations == (9, 3, 1)
  hash(cfg)
  with pytest.raises(ValueError, match=r"Unknown MotionVAEConfig keys \['widht'\]"):
    mv.MotionVAEConfig.from_dict({"widht": 3})
  with pytest.raises(ValueError, match="latent_dim"):
    mv.MotionVAEConfig.from_dict({"latent_dim": "32"})
  with pytest.raises(ValueError, match="quantizer"):
    mv.MotionVAEConfig(quantizer="vq")
  with pytest.raises(ValueError, match="Unknown MotionVAE preset"):
    mv.get_preset("huge")


def test_shape_errors_are_clear(model):
  with pytest.raises(ValueError, match="input_dim"):
    model.encode(jnp.zeros((1, 8, 12)))
  with pytest.raises(ValueError, match="exactly 4 frames"):
    model.encode_step(model.init_encode_state(1), jnp.zeros((1, 3, 263)))
  with pytest.raises(ValueError, match="one latent"):
    model.decode_step(model.init_decode_state(1), jnp.zeros((1, 2, 8)))


def test_param_count(model):
  n = mv.param_count(model)
  # conv_in 263->32 (k3), 2 stages x (down k4 + 3 x (k3 + k1)), conv_out 32->8 (k3)
  w, c = 32, 263
  res = 3 * ((3 * w * w + w) + (w * w + w))
  enc = (3 * c * w + w) + 2 * ((4 * w * w + w) + res) + (3 * w * 8 + 8)
  dec = (3 * 8 * w + w) + 2 * (res + 3 * w * w + w) + (3 * w * w + w) + (3 * w * c + c)
  assert n == enc + dec


# ---------------------------------------------------------------- training


def test_a_few_optax_steps_reduce_the_loss():
  # depth 1: the same layer shapes, a third of the graph to compile.
  m = _model(dataclasses.replace(SMALL, depth=1), seed=1)
  loss_fn = VAELoss(VAELossConfig(w_joints=0.0))
  t = jnp.linspace(0, 3, 14)[None, :, None]  # 14 frames: decoded 16, cropped back to 14
  phase = jax.random.uniform(jax.random.key(2), (4, 1, 263), maxval=6.0)
  x = jnp.sin(t * 2 + phase)  # smooth "motion" features
  mask = jnp.ones((4, 14), bool).at[0, 11:].set(False)
  opt = nnx.Optimizer(m, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(m, opt, key):
    def f(m):
      out = m(x, noise_key=key)
      assert out.recon.shape == x.shape and out.mean.shape == (4, 4, 8)
      return loss_fn(out, x, mask)
    (loss, metrics), grads = nnx.value_and_grad(f, has_aux=True)(m)
    opt.update(m, grads)
    return loss, metrics

  losses = [float(step(m, opt, jax.random.key(i))[0]) for i in range(20)]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


def test_joint_velocity_term_sees_motion_not_offsets():
  """w_joint_vel: L1 of the joints' frame-to-frame displacement over pairs of valid frames; a
  constant offset costs the joint term but not the velocity term; 'l1' recon is mean |diff|."""
  def to_joints(f):  # the first 66 dims as 22 joints (a stand-in for the features -> joints path)
    return f[..., :66].reshape(f.shape[:-1] + (22, 3))

  target = jax.random.normal(jax.random.key(0), (2, 6, 263))
  mask = jnp.ones((2, 6), bool).at[1, 4:].set(False)
  cfg = VAELossConfig(recon="l1", w_root=0.0, w_kl=0.0, w_joints=1.0, w_joint_vel=2.0)
  loss_fn = VAELoss(cfg, np.zeros(263), np.ones(263), to_joints=to_joints)

  def run(recon):
    out = mv.VAEOutput(recon=recon, mean=jnp.zeros((2, 2, 4)), latent=jnp.zeros((2, 2, 4)), indices=None)
    return loss_fn(out, target, mask)

  loss, m = run(target + 0.3)
  np.testing.assert_allclose([m["recon"], m["joints"], m["joint_vel"]], [0.3, 0.3, 0.0], atol=1e-6)
  np.testing.assert_allclose(loss, 0.6, rtol=1e-5)
  # One frame of one joint moved by 1: two displacements change, in 3 of the 66 x 9 pair-values
  # (clip 0: 5 pairs, clip 1: 3 pairs of valid frames); the masked tail of clip 1 is ignored.
  bumped = target.at[0, 2, 0].add(1.0).at[1, 5, :].add(100.0)
  _, m = run(bumped)
  np.testing.assert_allclose(m["joint_vel"], 2.0 / (8 * 66), rtol=1e-5)
  with pytest.raises(ValueError, match="w_joint_vel must be a float >= 0"):
    VAELossConfig(w_joint_vel=-1.0)
  with pytest.raises(ValueError, match="needs the dataset feature_mean"):
    VAELoss(VAELossConfig(w_joints=0.0, w_joint_vel=1.0))
