"""Llama backbone: HF parity, causality, packing, KV cache, scan/remat, presets."""
import dataclasses
import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.models import attention as attn_lib
from llamo_jax.models import layers as layers_lib
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama, LlamaConfig, init_cache, make_expert

TINY = presets.get_preset("tiny")


def make_model(cfg=TINY, seed=0, **overrides):
  return Llama(dataclasses.replace(cfg, **overrides), rngs=nnx.Rngs(seed))


def random_tokens(shape, seed=1, vocab=TINY.vocab_size):
  return jax.random.randint(jax.random.key(seed), shape, 0, vocab, dtype=jnp.int32)


@nnx.jit
def forward(model, tokens, positions=None, segment_ids=None):
  return model(tokens, positions, segment_ids)[0]


# ----------------------------------------------------------------- structure

def test_param_paths_shapes_and_logical_axes():
  cfg = TINY
  L, D, N, K, H, F, V = (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                         cfg.ffn_dim, cfg.vocab_size)
  expected = {
      "embed.embedding": (V, D),
      "layers.text.attn_norm.scale": (L, D),
      "layers.text.q.kernel": (L, D, N, H),
      "layers.text.k.kernel": (L, D, K, H),
      "layers.text.v.kernel": (L, D, K, H),
      "layers.text.o.kernel": (L, N, H, D),
      "layers.text.mlp_norm.scale": (L, D),
      "layers.text.gate.kernel": (L, D, F),
      "layers.text.up.kernel": (L, D, F),
      "layers.text.down.kernel": (L, F, D),
      "final_norm.scale": (D,),
      "lm_head.kernel": (D, V),
  }
  state = nnx.state(nnx.eval_shape(lambda: make_model()), nnx.Param)
  got = {".".join(map(str, p)): v for p, v in state.flat_state()}
  assert {k: v.shape for k, v in got.items()} == expected
  allowed = {"batch", "length", "embed", "heads", "kv_heads", "head_dim", "mlp", "vocab", "layers"}
  for path, v in got.items():
    axes = v.get_metadata()["out_sharding"]
    assert len(axes) == len(v.shape) and set(axes) <= allowed, (path, axes)
    assert (axes[0] == "layers") == path.startswith("layers."), (path, axes)
  tied = nnx.state(nnx.eval_shape(lambda: make_model(tie_embeddings=True)), nnx.Param)
  assert "lm_head" not in tied


@pytest.mark.parametrize("name,n_params", [
    ("smollm2_135m", 134_515_008),
    ("llama3_2_1b", 1_235_814_400),
    ("llama3_2_3b", 3_212_749_824),
    ("llama3_1_8b", 8_030_261_248),
])
def test_presets_have_published_parameter_counts(name, n_params):
  abstract = nnx.eval_shape(lambda: Llama(presets.get_preset(name), rngs=nnx.Rngs(0)))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == n_params


def test_get_preset_unknown_lists_names():
  with pytest.raises(ValueError, match="smollm2_135m"):
    presets.get_preset("llama9")


def test_config_dict_round_trip_and_errors():
  for cfg in presets.PRESETS.values():
    assert LlamaConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
  d = TINY.to_dict()
  with pytest.raises(ValueError, match="unknown_key"):
    LlamaConfig.from_dict({**d, "unknown_key": 1})
  with pytest.raises(ValueError, match="n_layers"):
    LlamaConfig.from_dict({**d, "n_layers": "2"})
  with pytest.raises(ValueError, match="remat_policy"):
    LlamaConfig.from_dict({**d, "remat_policy": "some"})
  with pytest.raises(ValueError, match="multiple of n_kv_heads"):
    LlamaConfig.from_dict({**d, "n_kv_heads": 3})
  with pytest.raises(ValueError, match="rope_scaling"):
    LlamaConfig.from_dict({**d, "rope_scaling": {"rope_type": "yarn", "factor": 2.0}})


# ----------------------------------------------------------------- HF parity

def _hf_config(cfg: LlamaConfig):
  transformers = pytest.importorskip("transformers")
  rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling is not None:
    rope = {"rope_type": "llama3", "rope_theta": cfg.rope_theta,
            **dataclasses.asdict(cfg.rope_scaling)}
  return transformers.LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
      num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
      rope_parameters=rope, tie_word_embeddings=cfg.tie_embeddings,
      max_position_embeddings=cfg.max_seq_len, attention_bias=False, mlp_bias=False)


def _copy_hf_weights(hf_model, model: Llama):
  """Test-only HF -> ours mapping (the real importer lives in llamo_jax.convert)."""
  cfg = model.cfg
  sd = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
  D, N, K, H = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
  layer = lambda name: np.stack([sd[f"model.layers.{i}.{name}"] for i in range(cfg.n_layers)])
  new = {
      ("embed", "embedding"): sd["model.embed_tokens.weight"],
      ("final_norm", "scale"): sd["model.norm.weight"],
      ("layers", "text", "attn_norm", "scale"): layer("input_layernorm.weight"),
      ("layers", "text", "mlp_norm", "scale"): layer("post_attention_layernorm.weight"),
      ("layers", "text", "q", "kernel"):
          layer("self_attn.q_proj.weight").transpose(0, 2, 1).reshape(-1, D, N, H),
      ("layers", "text", "k", "kernel"):
          layer("self_attn.k_proj.weight").transpose(0, 2, 1).reshape(-1, D, K, H),
      ("layers", "text", "v", "kernel"):
          layer("self_attn.v_proj.weight").transpose(0, 2, 1).reshape(-1, D, K, H),
      ("layers", "text", "o", "kernel"):
          layer("self_attn.o_proj.weight").transpose(0, 2, 1).reshape(-1, N, H, D),
      ("layers", "text", "gate", "kernel"): layer("mlp.gate_proj.weight").transpose(0, 2, 1),
      ("layers", "text", "up", "kernel"): layer("mlp.up_proj.weight").transpose(0, 2, 1),
      ("layers", "text", "down", "kernel"): layer("mlp.down_proj.weight").transpose(0, 2, 1),
  }
  if not cfg.tie_embeddings:
    new[("lm_head", "kernel")] = sd["lm_head.weight"].T
  state = nnx.state(model, nnx.Param)
  flat = dict(state.flat_state())
  assert set(flat) == set(new)
  for path, value in new.items():
    assert flat[path].shape == value.shape, path
    flat[path].set_value(jnp.asarray(value))
  nnx.update(model, state)


@pytest.mark.parametrize("tie,scaling", [(False, True), (True, False)])
def test_matches_transformers_llama(tie, scaling):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  cfg = dataclasses.replace(TINY, tie_embeddings=tie, rope_theta=5000.0 if scaling else 10000.0,
                            rope_scaling=TINY.rope_scaling if scaling else None)
  torch.manual_seed(0)
  hf = transformers.LlamaForCausalLM._from_config(_hf_config(cfg), attn_implementation="eager")
  hf = hf.float().eval()
  # Non-trivial norm scales, so a swapped/missing norm cannot pass.
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.1 * torch.randn_like(p))
  model = make_model(cfg)
  _copy_hf_weights(hf, model)
  # Long enough that the scaled (low) RoPE frequencies matter.
  tokens = np.array(random_tokens((2, 24)))
  positions = np.arange(24)[None] * 97 + np.array([[0], [5]])
  with torch.no_grad():
    ref = hf(torch.from_numpy(tokens).long(),
             position_ids=torch.from_numpy(positions).long()).logits.numpy()
  ours = forward(model, jnp.asarray(tokens), jnp.asarray(positions, jnp.int32))
  assert np.abs(ref).max() > 0.1
  np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4, rtol=1e-4)


def test_rope_inv_freq_matches_transformers():
  transformers = pytest.importorskip("transformers")
  from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
  for name in ("llama3_2_1b", "llama3_1_8b"):
    cfg = presets.get_preset(name)
    hf_cfg = _hf_config(dataclasses.replace(cfg, n_layers=1))
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, "cpu")
    ours = attn_lib.rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6)
    plain = attn_lib.rope_inv_freq(cfg.head_dim, cfg.rope_theta, None)
    assert not np.allclose(ours, plain)  # the scaling did something


# ----------------------------------------------------------------- masking

def test_causal_future_tokens_do_not_change_past_logits():
  model = make_model()
  tokens = random_tokens((2, 16))
  perturbed = tokens.at[:, 10:].set(random_tokens((2, 6), seed=7))
  a, b = forward(model, tokens), forward(model, perturbed)
  np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-6)
  assert np.abs(a[:, 10:] - b[:, 10:]).max() > 1e-3


def test_packed_segments_equal_separate_sequences():
  model = make_model()
  a, b = random_tokens((1, 7), seed=2), random_tokens((1, 9), seed=3)
  packed = jnp.concatenate([a, b], axis=1)
  segments = jnp.array([[1] * 7 + [2] * 9], jnp.int32)
  positions = jnp.array([list(range(7)) + list(range(9))], jnp.int32)
  out = forward(model, packed, positions, segments)
  np.testing.assert_allclose(out[:, :7], forward(model, a), atol=1e-5)
  np.testing.assert_allclose(out[:, 7:], forward(model, b), atol=1e-5)
  # Without the segment ids, b's tokens see a, so the check above can fail.
  leaky = forward(model, packed, positions)
  assert np.abs(leaky[:, 7:] - out[:, 7:]).max() > 1e-3


# ----------------------------------------------------------------- KV cache

@nnx.jit
def _step(model, tokens, cache, positions=None, segment_ids=None):
  return model(tokens, positions, segment_ids, cache)


def test_prefill_then_decode_equals_full_forward():
  model = make_model()
  tokens = random_tokens((2, 12))
  full = forward(model, tokens)
  cache = init_cache(model.cfg, batch=2, max_len=16)
  logits, cache = _step(model, tokens[:, :5], cache)
  outs = [logits]
  for t in range(5, 12):
    logits, cache = _step(model, tokens[:, t:t + 1], cache)
    outs.append(logits)
  assert int(cache.end_index) == 12
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5)


def test_left_padded_prompt_in_cache_is_invisible():
  model = make_model()
  prompt, cont = random_tokens((1, 5), seed=4), random_tokens((1, 3), seed=5)
  ref = forward(model, jnp.concatenate([prompt, cont], axis=1))
  pad = 3
  padded = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), prompt], axis=1)
  segments = jnp.array([[0] * pad + [1] * 5], jnp.int32)
  positions = jnp.array([[0] * pad + list(range(5))], jnp.int32)
  cache = init_cache(model.cfg, batch=1, max_len=12)
  logits, cache = _step(model, padded, cache, positions, segments)
  outs = [logits[:, pad:]]
  for i in range(3):
    pos = jnp.array([[5 + i]], jnp.int32)
    logits, cache = _step(model, cont[:, i:i + 1], cache, pos, jnp.ones((1, 1), jnp.int32))
    outs.append(logits)
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), ref, atol=1e-5)


# ----------------------------------------------------------------- scan / remat / dtype

def _loss_and_grads(model, tokens):
  def loss_fn(model):
    logits = model(tokens)[0]
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()
  return nnx.jit(nnx.value_and_grad(loss_fn))(model)


def _check_variants_agree(variants):
  tokens = random_tokens((2, 10))
  ref_loss, ref_grads = _loss_and_grads(make_model(), tokens)  # scan, no remat
  ref_grads = jax.tree.leaves(ref_grads)
  for scan, policy in variants:
    loss, grads = _loss_and_grads(make_model(scan_layers=scan, remat_policy=policy), tokens)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for g, r in zip(jax.tree.leaves(grads), ref_grads):
      np.testing.assert_allclose(g, r, atol=1e-6, rtol=1e-5)


def test_scan_and_loop_and_remat_agree():
  _check_variants_agree([(False, "none"), (True, "full"),
                         (True, "dots_with_no_batch_dims_saveable")])


@pytest.mark.slow
def test_all_scan_remat_combinations_agree():
  _check_variants_agree([(scan, policy) for scan in (True, False)
                         for policy in ("none", "full", "dots_saveable",
                                        "dots_with_no_batch_dims_saveable")])


def test_bfloat16_compute_keeps_fp32_params_and_logits():
  tokens = random_tokens((2, 10))
  ref = forward(make_model(), tokens)
  model = make_model(dtype="bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  out = forward(model, tokens)
  assert out.dtype == jnp.float32
  # bf16 has ~3 significant digits: close to fp32, but not equal.
  err = np.abs(np.asarray(out) - np.asarray(ref)).max()
  assert 0 < err < 0.05 * np.abs(np.asarray(ref)).max()


def _merged_with_blocks(model, blocks_state):
  graphdef, state = nnx.split(model)
  state["layers"] = blocks_state
  return nnx.merge(graphdef, state)


def test_per_layer_blocks_run_the_layer_loop_and_match_the_stack():
  tokens = random_tokens((2, 10))
  model = make_model()  # scan_layers=True
  ref = forward(model, tokens)
  state = nnx.split(model)[1]["layers"]
  # float32 arrays held per layer: the python layer loop, the same numbers as the scan.
  per_layer = jax.tree.map(lambda x: layers_lib.PerLayer(list(x)), state)
  np.testing.assert_allclose(forward(_merged_with_blocks(model, per_layer), tokens), ref,
                             atol=1e-5, rtol=1e-5)
  assert layers_lib.sampling_blocks(state, "float32") is state
  # bfloat16 kernels: bf16 operands, fp32 accumulation; norm scales stay fp32.
  low = layers_lib.sampling_blocks(state, "bfloat16")
  dtypes = {jax.tree_util.keystr(path): str(x.dtype) for path, x in jax.tree_util.tree_leaves_with_path(low)}
  assert {d for p, d in dtypes.items() if "kernel" in p} == {"bfloat16"}
  assert {d for p, d in dtypes.items() if "scale" in p} == {"float32"}
  assert len(dtypes) == len(jax.tree.leaves(state)) * TINY.n_layers
  out = forward(_merged_with_blocks(model, low), tokens)
  assert out.dtype == jnp.float32
  err = np.abs(np.asarray(out) - np.asarray(ref)).max()
  assert 0 < err < 0.05 * np.abs(np.asarray(ref)).max()
  # A single row takes Dense's two-row path: the same numbers.
  one = forward(_merged_with_blocks(model, low), tokens[:1, :1])
  np.testing.assert_allclose(one, out[:1, :1], atol=1e-6)
  with pytest.raises(ValueError, match="float16"):
    layers_lib.sampling_blocks(state, "float16")


# ----------------------------------------------------------------- MoT readiness

class _TwoExpertBlock(nnx.Module):
  """A minimal MoT block built only from the public pieces (as models/mot.py will)."""

  def __init__(self, cfg, rngs):
    self.text = make_expert(cfg, rngs=rngs)
    self.motion = make_expert(cfg, rngs=rngs)

  def __call__(self, h, ctx, layer_kv, is_motion):
    def pick(t, m):
      mask = is_motion.reshape(is_motion.shape + (1,) * (t.ndim - 2))
      return jnp.where(mask, m, t)
    q, k, v = (pick(t, m) for t, m in zip(self.text.qkv(h), self.motion.qkv(h)))
    a, layer_kv = attn_lib.attention(q, k, v, ctx, layer_kv)
    h = h + pick(self.text.attn_out(a), self.motion.attn_out(a))
    h = h + pick(self.text.ffn(h), self.motion.ffn(h))
    return h, layer_kv


def test_two_expert_block_routes_tokens_through_the_shared_attention():
  model = make_model()
  tokens = random_tokens((2, 12))
  ref = forward(model, tokens)
  block = _TwoExpertBlock(model.cfg, nnx.Rngs(5))
  block.text = model.layers.text
  mot = make_model()
  mot.layers = block
  is_motion = jnp.zeros((2, 12), bool).at[:, 6:9].set(True)

  @nnx.jit
  def run(mot, tokens, is_motion):
    h, _ = mot.backbone(mot.embed_tokens(tokens), block_args=(is_motion,))
    return mot.logits(h)

  # Text before the first motion token is exactly the base model...
  out = run(mot, tokens, is_motion)
  np.testing.assert_allclose(out[:, :6], ref[:, :6], atol=1e-6)
  assert np.abs(out[:, 6:] - ref[:, 6:]).max() > 1e-3  # ...motion tokens use their expert.
  # With the motion expert a copy of the text expert, routing changes nothing.
  nnx.update(block.motion, nnx.state(model.layers.text))
  np.testing.assert_allclose(run(mot, tokens, is_motion), ref, atol=1e-5)
  assert {p[1] for p, _ in nnx.state(mot, nnx.Param).flat_state() if p[0] == "layers"} == {
      "text", "motion"}
