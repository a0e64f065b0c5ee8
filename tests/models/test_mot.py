"""MoT backbone: frozen text path, per-modality routing, causality, capacities, sharding."""
import dataclasses
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.core import sharding
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama
from llamo_jax.models.mot import MoT, check_capacity, init_motion_from_text, make_routing

TINY = presets.get_preset("tiny")


def tokens_and_modality(b=2, t=12, seed=1):
  tokens = jax.random.randint(jax.random.key(seed), (b, t), 0, TINY.vocab_size, dtype=jnp.int32)
  modality = jnp.zeros((b, t), jnp.int32).at[0, 3:8].set(1).at[1, 5:11].set(1)
  return tokens, modality


def perturb(module, seed=7, scale=0.05):
  state = nnx.state(module, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  new = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  nnx.update(module, jax.tree.unflatten(treedef, new))


def base_and_mot(split="all", **kw):
  base = Llama(TINY, rngs=nnx.Rngs(0))
  mot = MoT(TINY, split=split, rngs=nnx.Rngs(1), **kw)
  nnx.update(mot, nnx.state(base, nnx.Param))
  return base, mot


@nnx.jit
def run(model, tokens, modality):
  return model(tokens, modality)[0]


@pytest.mark.parametrize("split", ["all", "ffn"])
def test_text_only_is_bit_identical_to_base_llama_before_and_after_motion_changes(split):
  base, mot = base_and_mot(split)
  tokens, _ = tokens_and_modality()
  ref = base(tokens)[0]
  np.testing.assert_array_equal(mot(tokens)[0], ref)
  np.testing.assert_array_equal(run(mot, tokens, jnp.zeros_like(tokens)), run(base, tokens,
                                                                               None))
  perturb(mot.layers.motion)
  np.testing.assert_array_equal(mot(tokens)[0], ref)
  # Text tokens before the first motion token do not see the motion expert either.
  _, modality = tokens_and_modality()
  out = mot(tokens, modality)[0]
  np.testing.assert_array_equal(out[0, :3], ref[0, :3])
  np.testing.assert_array_equal(out[1, :5], ref[1, :5])
  assert np.abs(out[0, 3:] - ref[0, 3:]).max() > 1e-3


def test_param_paths_extend_the_llama_with_a_motion_expert():
  base, mot = base_and_mot()
  paths = {".".join(map(str, p)): v.shape for p, v in nnx.state(mot, nnx.Param).flat_state()}
  base_paths = {".".join(map(str, p)): v.shape for p, v in nnx.state(base, nnx.Param).flat_state()}
  assert all(paths[p] == s for p, s in base_paths.items())
  motion = {p.replace("layers.motion.", "layers.text."): s for p, s in paths.items()
            if p.startswith("layers.motion.")}
  assert motion == {p: s for p, s in base_paths.items() if p.startswith("layers.text.")}


def test_routing_equals_running_both_experts_and_selecting():
  """Gather/scatter routing == dense reference (each expert on all tokens, pick by modality)."""
  _, mot = base_and_mot()
  perturb(mot.layers.motion)
  tokens, modality = tokens_and_modality()
  out = run(mot, tokens, modality)
  block = mot.layers
  is_m = (modality == 1)

  def pick(t, m):
    return jnp.where(is_m.reshape(is_m.shape + (1,) * (t.ndim - 2)), m, t)

  from llamo_jax.models import attention as attn_lib
  from llamo_jax.models.llama import run_blocks

  class Dense(nnx.Module):
    def __init__(self, text, motion):
      self.text, self.motion = text, motion

    def __call__(self, h, ctx, kv):
      q, k, v = (pick(a, b) for a, b in zip(self.text.qkv(h), self.motion.qkv(h)))
      a, kv = attn_lib.attention(q, k, v, ctx, kv)
      h = h + pick(self.text.attn_out(a), self.motion.attn_out(a))
      return h + pick(self.text.ffn(h), self.motion.ffn(h)), kv

  ctx, _ = mot.attention_context(2, 12, None, None, None)
  h, _ = run_blocks(Dense(block.text, block.motion), mot.embed_tokens(tokens), ctx, None,
                    scan_layers=True, remat_policy="none")
  np.testing.assert_allclose(out, mot.logits(mot.final_norm(h)), atol=1e-5)


def test_motion_tokens_depend_on_motion_projections_text_tokens_only_via_attention():
  _, mot = base_and_mot()
  tokens, modality = tokens_and_modality()
  before = mot(tokens, modality)[0]
  # Motion FFN change: motion positions change; text positions before them do not.
  ffn = mot.layers.motion.down
  ffn.kernel[...] = ffn.kernel[...] + 0.1
  after = mot(tokens, modality)[0]
  assert np.abs(after[0, 3:8] - before[0, 3:8]).min() > 0
  np.testing.assert_array_equal(after[0, :3], before[0, :3])
  # A last-layer FFN change reaches only the motion tokens themselves (no later attention).
  ffn.kernel[...] = ffn.kernel[...].at[-1].add(0.1)
  after2 = mot(tokens, modality)[0]
  np.testing.assert_array_equal(after2[0, 8:], after[0, 8:])
  np.testing.assert_array_equal(after2[1, 11:], after[1, 11:])
  assert np.abs(after2[0, 3:8] - after[0, 3:8]).max() > 1e-4


def test_causal_over_the_interleaved_sequence():
  _, mot = base_and_mot()
  perturb(mot.layers.motion)
  tokens, modality = tokens_and_modality()
  out = run(mot, tokens, modality)
  tokens2 = tokens.at[:, 9:].set((tokens[:, 9:] + 1) % TINY.vocab_size)
  modality2 = modality.at[:, 10:].set(1 - modality[:, 10:])
  out2 = run(mot, tokens2, modality2)
  np.testing.assert_array_equal(out2[:, :9], out[:, :9])
  assert np.abs(out2[:, 9:] - out[:, 9:]).max() > 1e-3


def test_capacity_buffers_match_full_buffers_and_count_overflow():
  _, full = base_and_mot()
  perturb(full.layers.motion)
  capped = MoT(TINY, text_capacity=7, motion_capacity=6, rngs=nnx.Rngs(1))
  nnx.update(capped, nnx.state(full, nnx.Param))
  tokens, modality = tokens_and_modality()  # max 7 text / 6 motion tokens per row
  np.testing.assert_allclose(run(capped, tokens, modality), run(full, tokens, modality),
                             atol=1e-6)
  check_capacity(np.asarray(modality), 7, 6)
  with pytest.raises(ValueError, match="motion_capacity"):
    check_capacity(np.asarray(modality), 7, 5)
  assert int(make_routing(modality, 7, 5).overflow) == 1
  assert int(make_routing(modality, 7, 6).overflow) == 0


def test_call_buffers_skip_an_expert_and_match_full_buffers():
  _, full = base_and_mot()
  perturb(full.layers.motion)
  tokens, modality = tokens_and_modality()
  h = full.embed_tokens(tokens)

  @functools.partial(nnx.jit, static_argnames="buffers")
  def backbone(model, h, modality, buffers):
    return model.mot_backbone(h, modality, buffers=buffers)

  ref, _, _ = backbone(full, h, modality, None)
  # A row of motion tokens only: (0, None) skips the text expert, same result.
  motion = jnp.ones_like(modality)
  out, _, route = backbone(full, h, motion, (0, None))
  np.testing.assert_allclose(out, backbone(full, h, motion, None)[0], atol=1e-6)
  assert route.text_idx.shape[1] == 0 and int(route.overflow) == 0
  # Caps that fit the rows (max 7 text / 6 motion) change nothing ...
  np.testing.assert_allclose(backbone(full, h, modality, (7, 6))[0], ref, atol=1e-6)
  # ... a skipped expert's tokens get a zero output and count as overflow.
  out, _, route = backbone(full, h, modality, (None, 0))
  assert int(route.overflow) == int(modality.sum())
  np.testing.assert_allclose(out[0, :3], ref[0, :3], atol=1e-6)  # before row 0's motion (3:8)
  assert not np.allclose(out[0, 3:], ref[0, 3:], atol=1e-3)
  with pytest.raises(ValueError, match="capacity 0 for both"):
    backbone(full, h, modality, (0, 0))


def test_init_motion_from_text_makes_routing_a_no_op():
  base, mot = base_and_mot()
  perturb(mot.layers.motion)
  init_motion_from_text(mot)
  tokens, modality = tokens_and_modality()
  np.testing.assert_allclose(run(mot, tokens, modality), run(base, tokens, None), atol=1e-6)
  # A copy, not an alias: changing motion leaves text alone.
  mot.layers.motion.q.kernel[...] = mot.layers.motion.q.kernel[...] + 1
  np.testing.assert_array_equal(mot.layers.text.q.kernel[...], base.layers.text.q.kernel[...])


def test_sharded_forward_equals_single_device():
  cfg = dataclasses.replace(TINY, n_heads=4, n_kv_heads=2)
  single = MoT(cfg, rngs=nnx.Rngs(3))
  perturb(single.layers.motion)
  tokens, modality = tokens_and_modality(b=4)
  modality = jnp.concatenate([modality, modality[::-1]])[:4]
  ref = run(single, tokens, modality)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  with sharding.mesh_context(mesh):
    model = sharding.create_sharded(lambda: MoT(cfg, rngs=nnx.Rngs(3)), mesh)
    nnx.update(model, jax.device_put(nnx.state(single, nnx.Param),
                                     sharding.state_shardings(nnx.state(model, nnx.Param), mesh)))
    kernel = model.layers.motion.q.kernel[...]
    assert len(kernel.sharding.device_set) == 8
    out = run(model, jax.device_put(tokens, sharding.batch_sharding(mesh)),
              jax.device_put(modality, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_ffn_split_shares_attention_projections():
  _, mot = base_and_mot("ffn")
  tokens, modality = tokens_and_modality()
  before = run(mot, tokens, modality)
  for name in ("q", "k", "v", "o"):  # unused in the "ffn" split
    kernel = getattr(mot.layers.motion, name).kernel
    kernel[...] = kernel[...] + 1.0
  np.testing.assert_array_equal(run(mot, tokens, modality), before)
  mot.layers.motion.up.kernel[...] = mot.layers.motion.up.kernel[...] + 0.1
  assert np.abs(run(mot, tokens, modality)[0, 3:8] - before[0, 3:8]).max() > 1e-4


def test_loop_and_remat_agree_with_scan():
  _, mot = base_and_mot()
  perturb(mot.layers.motion)
  tokens, modality = tokens_and_modality()
  ref = run(mot, tokens, modality)
  other = MoT(dataclasses.replace(TINY, scan_layers=False, remat_policy="full"), rngs=nnx.Rngs(1))
  nnx.update(other, nnx.state(mot, nnx.Param))
  np.testing.assert_allclose(run(other, tokens, modality), ref, atol=1e-5)


def test_mot_step_costs_about_one_dense_step_in_compiled_flops():
  """MoT overhead without timing: XLA's FLOP count of fwd+bwd, MoT (buffers sized to the
  token counts) vs the dense Llama on the same tokens, and vs running both experts."""
  cfg = dataclasses.replace(TINY, dim=128, ffn_dim=512, n_heads=4, head_dim=32, n_layers=2)
  b, t, n_motion = 2, 128, 80
  tokens = jnp.zeros((b, t), jnp.int32)
  modality = jnp.zeros((b, t), jnp.int32).at[:, 30:30 + n_motion].set(1)

  def flops(model, modality):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
      m = nnx.merge(graphdef, p)
      out = m(tokens, modality)[0] if modality is not None else m(tokens)[0]
      return jnp.mean(out.astype(jnp.float32) ** 2)
    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])

  dense = flops(Llama(cfg, rngs=nnx.Rngs(0)), None)
  mot = flops(MoT(cfg, text_capacity=t - n_motion, motion_capacity=n_motion, rngs=nnx.Rngs(0)), modality)
  both = flops(MoT(cfg, rngs=nnx.Rngs(0)), modality)
  assert mot / dense < 1.1, (mot, dense)
  assert both / dense > 1.3, (both, dense)  # the check can tell routing from running both experts
