"""Evaluator models: padding never leaks into the recurrent / attention states, the losses on constructed cases."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from llamo_jax.models import evaluators


def test_gru_ignores_steps_past_each_length_in_both_directions():
  gru = evaluators.GRU(5, 7, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (3, 9, 5))
  lengths = jnp.array([9, 4, 1])
  h0 = jax.random.normal(jax.random.key(2), (3, 7))
  noisy = x.at[1, 4:].set(100.0).at[2, 1:].set(-50.0)
  for reverse in (False, True):
    np.testing.assert_allclose(gru(x, lengths, h0, reverse=reverse), gru(noisy, lengths, h0, reverse=reverse),
                               atol=1e-6)
  # Backwards from its own last step: the reverse pass over x[:4] equals the forward pass over x[:4] reversed.
  np.testing.assert_allclose(gru(x[1:2], jnp.array([4]), h0[1:2], reverse=True),
                             gru(x[1:2, :4][:, ::-1], jnp.array([4]), h0[1:2]), atol=1e-6)


def test_guo_text_embedding_ignores_padding_tokens_and_motion_reads_length_over_4_latents():
  config = evaluators.GuoConfig(input_dim=11, vocab_size=10, word_dim=8, movement_hidden=8, movement_latent=8,
                                text_hidden=8, motion_hidden=8, embed_dim=6)
  model = evaluators.GuoEvaluator(config, rngs=nnx.Rngs(0))
  words = jnp.array([[0, 4, 5, 1, 2, 2], [0, 4, 5, 1, 7, 3]])
  pos = jnp.array([[14, 1, 0, 14, 14, 14], [14, 1, 0, 14, 3, 9]])
  out = model.encode_text(words, pos, jnp.array([4, 4]))
  np.testing.assert_allclose(out[0], out[1], atol=1e-6)
  feats = jax.random.normal(jax.random.key(0), (2, 32, 11))
  lengths = jnp.array([16, 16])
  # Frames from 16 + 7 on are outside the receptive field of the first 4 latents.
  far = feats.at[:, 23:].set(9.0)
  np.testing.assert_allclose(model.encode_motion(feats, lengths), model.encode_motion(far, lengths), atol=1e-5)
  near = feats.at[:, 17].set(9.0)  # seen by the last latent's convolution window (the released behaviour)
  assert np.abs(model.encode_motion(feats, lengths) - model.encode_motion(near, lengths)).max() > 1e-4


def test_tmr_unit_embeddings_ignore_padding_patches():
  config = evaluators.TMRConfig(input_dim=6, vocab_size=12, width=16, layers=2, heads=2, mlp_dim=32,
                                embed_dim=8, max_frames=24, max_words=5)
  model = evaluators.TMREvaluator(config, rngs=nnx.Rngs(0))
  feats = jax.random.normal(jax.random.key(0), (2, 24, 6))
  lengths = jnp.array([24, 8])
  z = model.encode_motion(feats, lengths)
  np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(z, model.encode_motion(feats.at[1, 8:].set(5.0), lengths), atol=1e-5)
  t = model.encode_text(jnp.array([[3, 4, 0, 0, 0], [3, 4, 7, 8, 9]]), jnp.array([2, 2]))
  np.testing.assert_allclose(t[0], t[1], atol=1e-5)


def test_guo_loss_constructed_case():
  text = jnp.array([[0.0, 0.0], [3.0, 4.0]])
  motion = jnp.array([[0.0, 0.0], [3.0, 4.0]])
  loss, m = evaluators.guo_contrastive_loss(text, motion, jnp.array([1]), margin=10.0)
  # matched: d ~ 0; rolled: d = 5 -> (10 - 5)^2 = 25 each
  np.testing.assert_allclose(m["loss_neg"], 25.0, rtol=1e-4)
  np.testing.assert_allclose(loss, 25.0, rtol=1e-4)
  _, m = evaluators.guo_contrastive_loss(text, motion, jnp.array([1]), margin=4.0)
  np.testing.assert_allclose(m["loss_neg"], 0.0, atol=1e-6)  # pushed past the margin already


def test_infonce_masks_near_duplicate_negatives():
  text = jnp.eye(3)
  motion = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # texts 0 and 1 share a motion
  none = jnp.zeros((3, 3), bool)
  dup = jnp.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
  loss_plain, _ = evaluators.infonce_loss(text, motion, none, 0.1)
  loss_masked, _ = evaluators.infonce_loss(text, motion, dup, 0.1)
  assert loss_masked < loss_plain
  # With the duplicate masked, text 0 sees only motion 2 as a negative: log(1 + e^-10) for it.
  logits = np.asarray(text @ motion.T / 0.1)
  expected_row0 = np.log(np.exp(logits[0, 0]) + np.exp(logits[0, 2])) - logits[0, 0]
  assert expected_row0 < 1e-4
