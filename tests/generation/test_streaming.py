"""generation.streaming (and decode): streamed frames == generate_motion + decode_latents."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.generation import decode
from llamo_jax.generation import streaming
from llamo_jax.generation import text_to_motion
from llamo_jax.models import motion_vae
from tiny_llamo import C, SAMPLING, make_model, prompt


@pytest.fixture(scope="module")
def model():
  return make_model()


def test_stream_matches_offline_decode(model):
  vae = motion_vae.MotionVAE(motion_vae.MotionVAEConfig(input_dim=8, latent_dim=C, width=16,
                                                        depth=2), rngs=nnx.Rngs(2))
  mean, std = np.linspace(-0.5, 0.5, C), np.linspace(0.5, 2.0, C)
  prompts = [prompt(5, 50), prompt(8, 51)]
  # bfloat16 flow and backbone: streaming must pass both on (float32 differs from them by
  # ~1e-2, test_text_to_motion.py); the dtypes share every other line of the two paths.
  kw = dict(max_latents=6, cfg_scale=2.0, flow_dtype="bfloat16", backbone_dtype="bfloat16",
            **SAMPLING)
  latents, lengths = text_to_motion.generate_motion(model, prompts, jax.random.key(7), **kw)
  offline = decode.decode_latents(vae, latents, lengths, mean, std)
  chunks = list(streaming.stream_motion(model, vae, prompts, jax.random.key(7), latent_mean=mean,
                                        latent_std=std, **kw))
  assert len(chunks) == int(np.max(lengths))
  frames = np.concatenate([np.asarray(c.frames) for c in chunks], axis=1)
  active = np.stack([np.asarray(c.active) for c in chunks], axis=1)
  np.testing.assert_array_equal(active.sum(1), lengths)
  for i, n in enumerate(np.asarray(lengths)):
    assert offline[i].shape == (4 * n, 8)
    np.testing.assert_allclose(frames[i, :4 * n], offline[i], atol=1e-5)
  # decode_latents denormalises: decoding raw latents directly gives the same frames.
  raw = np.asarray(latents) * std + mean
  direct = np.asarray(vae.decode(jnp.asarray(raw[:1])))[0]
  np.testing.assert_allclose(offline[0], direct[:4 * int(lengths[0])], atol=1e-5)
