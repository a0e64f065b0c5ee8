"""generation.text_to_motion: KV cache == full recompute, padding, exit rule, CFG, errors."""
import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.generation import text_to_motion as t2m
from llamo_jax.generation.prompts import PromptBatch, left_pad
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import llamo as llamo_lib
from tiny_llamo import C, SAMPLING, forward, make_model, prompt


@pytest.fixture(scope="module")
def model():
  return make_model()


def reference_generate(model, prompts, keys, *, max_latents, cfg_scale, flow_steps, temperature,
                       exit_threshold, min_latents, method="euler", prefix_latents=None,
                       prefix_lengths=None):
  """The sampler without a cache: the full forward over the whole sequence every step.

  The sequence buffer has a fixed length (prompt + max_latents, unused tail
  slots after the fed latents): causal attention keeps the tail from changing
  the positions read, and one shape compiles once.
  """
  tokens = jnp.asarray(np.stack(prompts))
  b, p = tokens.shape
  t = p + max_latents
  rows = 2 if cfg_scale is not None else 1
  tok = jnp.tile(jnp.pad(tokens, ((0, 0), (0, max_latents))), (rows, 1))
  mod = jnp.broadcast_to((jnp.arange(t) >= p).astype(jnp.int32), (rows * b, t))
  pos = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (rows * b, t))
  seg = jnp.ones((b, t), jnp.int32)
  seg = jnp.concatenate([seg, seg.at[:, :p - 1].set(-1)])[:rows * b]
  lat = np.zeros((rows * b, t, C), np.float32)
  out = np.zeros((b, max_latents, C), np.float32)
  done, lengths = np.zeros(b, bool), np.zeros(b, np.int32)
  for k in range(max_latents):
    _, h = forward(model, tok, jnp.asarray(lat), mod, pos, seg)
    h = h[:, p - 1 + k].astype(jnp.float32)  # [BOM] for k = 0, else the latest latent
    if k > 0:
      p_exit = np.asarray(jax.nn.sigmoid(model.exit_logits(h[:b])))
      given = k < (prefix_lengths if prefix_lengths is not None else np.zeros(b, int))
      done |= (p_exit > exit_threshold) & (k >= min_latents) & ~given
      if done.all():
        break
    x0 = temperature * jnp.stack([jax.random.normal(jax.random.fold_in(key, k), (C,))
                                  for key in keys])
    velocity = flow_lib.guided_velocity(model.flow_head, h[:b],
                                        h[b:] if cfg_scale is not None else None,
                                        1.0 if cfg_scale is None else cfg_scale)
    z = np.array(flow_lib.integrate(velocity, x0, steps=flow_steps, method=method))
    if prefix_lengths is not None:
      given = k < prefix_lengths
      if given.any():
        z[given] = prefix_latents[given, k]
    z[done] = 0
    out[:, k] = z
    lengths += ~done
    lat[:, p + k] = np.tile(z, (rows, 1))
  return out, lengths


@pytest.mark.parametrize("cfg_scale,method", [(2.5, "euler"), (None, "heun")])
def test_cached_generation_equals_full_recompute(model, cfg_scale, method):
  prompts = [prompt(6, 0), prompt(6, 1), prompt(6, 2)]
  keys = jax.random.split(jax.random.key(3), 3)
  kw = dict(max_latents=6, cfg_scale=cfg_scale, min_latents=2, method=method, **SAMPLING)
  latents, lengths = t2m.generate_motion(model, prompts, keys, **kw)
  ref, ref_lengths = reference_generate(model, prompts, keys, **kw)
  np.testing.assert_array_equal(lengths, ref_lengths)
  assert len(set(ref_lengths.tolist())) > 1, "test needs sequences of different lengths"
  np.testing.assert_allclose(latents, ref, rtol=1e-5, atol=2e-5)
  assert not np.allclose(ref[0, 0], ref[1, 0])  # different prompts -> different latents


@pytest.mark.parametrize("bom_expert", ["text", "motion"])
def test_prefill_branches_equal_the_whole_prompt_in_both_branches(model, bom_expert):
  """The unconditional branch's [BOM]-only prefill gives the h and the visible cache of
  the whole prompt run with its caption in UNCOND_SEGMENT (the reference of the docstring)."""
  m = nnx.clone(model)
  m.config = dataclasses.replace(m.config, bom_expert=bom_expert)
  prompts = [prompt(6, 40), prompt(3, 41)]  # left-padded: different [BOM] positions
  batch = PromptBatch(*map(jnp.asarray, left_pad(prompts)))
  b, t = batch.tokens.shape
  cache, h = nnx.jit(t2m.prefill_branches, static_argnums=(2, 3))(m, batch, t + 4, True)
  uncond = jnp.where(batch.segment_ids > 0, t2m.UNCOND_SEGMENT, 0).at[:, -1].set(1)
  tokens = jnp.concatenate([batch.tokens] * 2)
  ref_cache, _, ref_h = nnx.jit(llamo_lib.prefill, static_argnums=4)(
      m, tokens, jnp.zeros(tokens.shape + (C,)), jnp.zeros_like(tokens), t + 4,
      jnp.concatenate([batch.positions] * 2), jnp.concatenate([batch.segment_ids, uncond]))
  np.testing.assert_allclose(h, ref_h, rtol=1e-5, atol=1e-5)
  assert int(cache.end_index) == t
  visible = np.asarray(ref_cache.segment_ids == 1)              # what segment-1 queries read
  np.testing.assert_array_equal(np.asarray(cache.segment_ids == 1), visible)
  for got, want in ((cache.k, ref_cache.k), (cache.v, ref_cache.v)):
    np.testing.assert_allclose(np.asarray(got)[:, visible], np.asarray(want)[:, visible],
                               rtol=1e-5, atol=1e-5)
  assert visible[b:].sum() == b  # the unconditional rows hold only their [BOM]


def test_continuation_keeps_the_given_first_latents_then_samples(model):
  """prefix_latents: each sequence's first prefix_lengths[b] latents are the given ones, fed back like
  sampled ones, with no exit inside them; then the model continues (== the full recompute)."""
  prompts = [prompt(6, 40), prompt(6, 41), prompt(6, 42)]
  keys = jax.random.split(jax.random.key(6), 3)
  given = np.random.default_rng(0).normal(size=(3, 4, C)).astype(np.float32)
  lengths = np.array([0, 2, 4])
  kw = dict(max_latents=6, cfg_scale=2.5, min_latents=1, **SAMPLING)
  latents, n = t2m.generate_motion(model, prompts, keys, prefix_latents=given, prefix_lengths=lengths, **kw)
  ref, ref_n = reference_generate(model, prompts, keys, prefix_latents=given, prefix_lengths=lengths, **kw)
  np.testing.assert_array_equal(n, ref_n)
  np.testing.assert_allclose(latents, ref, rtol=1e-5, atol=2e-5)
  np.testing.assert_array_equal(latents[1, :2], given[1, :2])
  np.testing.assert_array_equal(latents[2, :4], given[2, :4])
  plain, _ = t2m.generate_motion(model, prompts, keys, **kw)
  np.testing.assert_array_equal(latents[0], plain[0])            # an empty prefix changes nothing
  assert not np.allclose(latents[2, 4:], plain[2, 4:])          # the continuation follows its prefix
  bias = model.exit_head.bias[...]
  try:  # an exit that always fires ends each sequence right after its prefix
    model.exit_head.bias[...] = jnp.array([50.0])
    _, n = t2m.generate_motion(model, prompts, keys, prefix_latents=given, prefix_lengths=lengths, **kw)
    np.testing.assert_array_equal(n, [1, 2, 4])
  finally:
    model.exit_head.bias[...] = bias
  with pytest.raises(ValueError, match="prefix_lengths must be"):
    t2m.generate_motion(model, prompts, keys, prefix_latents=given, prefix_lengths=np.array([0, 5, 1]), **kw)
  with pytest.raises(ValueError, match="together"):
    t2m.generate_motion(model, prompts, keys, prefix_latents=given, **kw)


def test_left_padded_batch_equals_each_prompt_alone(model):
  prompts = [prompt(5, 10), prompt(9, 11), prompt(2, 12)]
  keys = jax.random.split(jax.random.key(4), 3)
  kw = dict(max_latents=5, cfg_scale=3.0, **SAMPLING)
  latents, lengths = t2m.generate_motion(model, prompts, keys, **kw)
  for i, p in enumerate(prompts):
    alone, n = t2m.generate_motion(model, [p], keys[i:i + 1], **kw)
    assert int(n[0]) == int(lengths[i])
    np.testing.assert_allclose(latents[i], alone[0], rtol=1e-5, atol=2e-5)
  # One key is split per sequence: the same key gives the same batch sample.
  again, _ = t2m.generate_motion(model, prompts, jax.random.key(9), **kw)
  np.testing.assert_array_equal(again, t2m.generate_motion(
      model, prompts, jax.random.key(9), **kw)[0])


def test_exit_head_bias_sets_length(model):
  prompts = [prompt(4, 20), prompt(7, 21)]
  bias = model.exit_head.bias[...]
  try:
    model.exit_head.bias[...] = jnp.array([50.0])
    latents, lengths = t2m.generate_motion(model, prompts, jax.random.key(0),
                                           max_latents=6, min_latents=3, **SAMPLING)
    np.testing.assert_array_equal(lengths, [3, 3])
    assert np.all(latents[:, 3:] == 0) and np.all(np.abs(latents[:, :3]).sum(-1) > 0)
    model.exit_head.bias[...] = jnp.array([-50.0])
    _, lengths = t2m.generate_motion(model, prompts, jax.random.key(0), max_latents=6,
                                     min_latents=3, **SAMPLING)
    np.testing.assert_array_equal(lengths, [6, 6])
  finally:
    model.exit_head.bias[...] = bias


def test_cfg_scale_one_equals_conditional_sampling(model):
  prompts = [prompt(5, 30), prompt(3, 31)]
  kw = dict(max_latents=4, **SAMPLING)
  guided, n1 = t2m.generate_motion(model, prompts, jax.random.key(5), cfg_scale=1.0, **kw)
  plain, n2 = t2m.generate_motion(model, prompts, jax.random.key(5), cfg_scale=None, **kw)
  np.testing.assert_array_equal(n1, n2)
  np.testing.assert_allclose(guided, plain, atol=1e-5)
  # ... and a real guidance weight changes the sample (the unconditional branch matters).
  strong, _ = t2m.generate_motion(model, prompts, jax.random.key(5), cfg_scale=4.0, **kw)
  assert np.abs(np.asarray(strong)[:, 0] - np.asarray(plain)[:, 0]).max() > 1e-3


def test_start_guidance_applies_to_the_first_latents_only(model):
  prompts = [prompt(5, 40), prompt(3, 41)]
  kw = dict(max_latents=4, min_latents=4, **SAMPLING)
  key = jax.random.key(6)
  weak, _ = t2m.generate_motion(model, prompts, key, cfg_scale=1.5, **kw)
  strong, _ = t2m.generate_motion(model, prompts, key, cfg_scale=6.0, **kw)
  # Every latent at the start scale is sampling at that scale throughout.
  all_start, _ = t2m.generate_motion(model, prompts, key, cfg_scale=1.5, start_cfg_scale=6.0,
                                     start_latents=4, **kw)
  np.testing.assert_allclose(all_start, strong, atol=1e-6)
  # One at the start scale: the first latent is the strong sample's, a later one is neither.
  mixed, _ = t2m.generate_motion(model, prompts, key, cfg_scale=1.5, start_cfg_scale=6.0,
                                 start_latents=1, **kw)
  weak, strong, mixed = map(np.asarray, (weak, strong, mixed))
  np.testing.assert_allclose(mixed[:, 0], strong[:, 0], atol=1e-6)
  assert np.abs(mixed[:, 0] - weak[:, 0]).max() > 1e-3
  for other in (weak, strong):
    assert np.abs(mixed[:, 2] - other[:, 2]).max() > 1e-4
  for given in (dict(start_latents=2), dict(start_cfg_scale=3.0)):
    with pytest.raises(ValueError, match="Pass start_cfg_scale and start_latents >= 1 together"):
      t2m.generate_motion(model, prompts, key, cfg_scale=1.5, **given, **kw)
  with pytest.raises(ValueError, match="start_cfg_scale needs guidance"):
    t2m.generate_motion(model, prompts, key, cfg_scale=None, start_cfg_scale=3.0, start_latents=1, **kw)


def test_bfloat16_flow_stays_close_to_float32_and_leaves_the_model_float32(model):
  prompts = [prompt(5, 60), prompt(7, 61)]
  kw = dict(max_latents=3, cfg_scale=2.5, min_latents=3, **SAMPLING)
  ref, n1 = t2m.generate_motion(model, prompts, jax.random.key(8), **kw)
  low, n2 = t2m.generate_motion(model, prompts, jax.random.key(8), flow_dtype="bfloat16", **kw)
  np.testing.assert_array_equal(n1, n2)
  ref, low = np.asarray(ref), np.asarray(low)
  err = np.abs(low - ref)
  # The flag reaches the head (else 0) and moves the latents by bf16's rounding only, fed
  # back through the backbone twice (tests/models/test_flow_head.py: 2% of the flow's reach).
  assert 0 < err.max() < 0.02 * np.abs(ref).max()
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model.flow_head)))


def test_bfloat16_backbone_stays_close_to_float32_and_leaves_the_model_float32(model):
  prompts = [prompt(5, 62), prompt(7, 63)]
  kw = dict(max_latents=3, cfg_scale=2.5, min_latents=3, **SAMPLING)
  ref, _ = t2m.generate_motion(model, prompts, jax.random.key(9), **kw)
  low, _ = t2m.generate_motion(model, prompts, jax.random.key(9), backbone_dtype="bfloat16", **kw)
  both, _ = t2m.generate_motion(model, prompts, jax.random.key(9), backbone_dtype="bfloat16",
                                flow_dtype="bfloat16", **kw)
  ref, low, both = map(np.asarray, (ref, low, both))
  # The flag reaches the backbone (else 0): bf16 rounding of h, through the flow ODE.
  assert 0 < np.abs(low - ref).max() < 0.02 * np.abs(ref).max()
  assert np.abs(both - low).max() > 0
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_sampling_casts_are_reused_until_a_param_changes():
  model = make_model()
  first = t2m.split_for_sampling(model, "float32", "bfloat16")[1]
  assert t2m.split_for_sampling(model, "float32", "bfloat16")[1] is first
  assert t2m.split_for_sampling(model, "bfloat16", "bfloat16")[1] is not first
  assert t2m.split_for_sampling(model, "float32", "bfloat16")[1] is first  # two kept
  model.flow_head.out_proj.kernel[...] += 1.0  # a new array: the cast must see it
  again = t2m.split_for_sampling(model, "float32", "bfloat16")[1]
  assert again is not first
  np.testing.assert_array_equal(again["flow_head"]["out_proj"]["kernel"][...],
                                model.flow_head.out_proj.kernel[...])


def test_errors_name_the_problem(model):
  with pytest.raises(ValueError, match=r"\[BOM\]"):
    t2m.generate_motion(model, [np.array([1, 2, 3], np.int32)], jax.random.key(0),
                        max_latents=2)
  with pytest.raises(ValueError, match="min_latents"):
    t2m.generate_motion(model, [prompt(3, 0)], jax.random.key(0), max_latents=2,
                        min_latents=3)
  with pytest.raises(ValueError, match=r"flow_dtype 'float16' is not one of \('float32', 'bfloat16'\)"):
    t2m.generate_motion(model, [prompt(3, 0)], jax.random.key(0), max_latents=2,
                        flow_dtype="float16")
  with pytest.raises(ValueError, match=r"backbone_dtype 'float16' is not one of"):
    t2m.generate_motion(model, [prompt(3, 0)], jax.random.key(0), max_latents=2,
                        backbone_dtype="float16")
  with pytest.raises(ValueError, match="one key per prompt"):
    t2m.generate_motion(model, [prompt(3, 0)], jax.random.split(jax.random.key(0), 2),
                        max_latents=2)
