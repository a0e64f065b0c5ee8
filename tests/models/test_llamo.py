"""LLaMo: config, embeddings, frozen text path, losses, trainable filter, cache decoding, load_base."""
import dataclasses
import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.convert import pretrained
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama
from llamo_jax.convert.pretrained import load_base
from llamo_jax.models.llamo import (LLaMo, LLaMoConfig, bom_id, decode_step, eom_id,
                                    prefill, trainable_filter)

TINY = presets.get_preset("tiny")
CFG = LLaMoConfig(llama=TINY, latent_dim=4, flow_width=32, flow_depth=2, k_t=2)
C = CFG.latent_dim


def make_batch(b=2, seed=0):
  """`[BOS] text [BOM] m1..m4 [EOM] text [EOS]` packed as T=14, per the documented format."""
  t = 14
  key = jax.random.key(seed)
  tokens = jax.random.randint(key, (b, t), 2, TINY.vocab_size, dtype=jnp.int32)
  modality = np.zeros((b, t), np.int32)
  modality[:, 5:9] = 1
  tokens = tokens.at[:, 4].set(bom_id(CFG)).at[:, 9].set(eom_id(CFG))
  tokens = jnp.where(modality == 1, 0, tokens)
  latents = jax.random.normal(jax.random.key(seed + 1), (b, t, C)) * (modality == 1)[..., None]
  flow_mask = np.zeros((b, t), np.float32)
  flow_mask[:, 4:8] = 1
  flow_targets = jnp.roll(latents, -1, axis=1) * flow_mask[..., None]
  exit_labels = np.zeros((b, t), np.float32)
  exit_labels[:, 8] = 1
  text_mask = np.zeros((b, t), np.float32)
  text_mask[:, 9:13] = 1
  cond_mask = np.zeros((b, t), np.float32)
  cond_mask[:, 1:4] = 1
  return {
      "tokens": tokens, "latents": latents, "modality": jnp.asarray(modality),
      "positions": jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)),
      "segment_ids": jnp.ones((b, t), jnp.int32),
      "text_targets": jnp.clip(jnp.roll(tokens, -1, axis=1), 0, TINY.vocab_size - 1),
      "text_mask": jnp.asarray(text_mask), "flow_targets": flow_targets,
      "flow_mask": jnp.asarray(flow_mask), "exit_labels": jnp.asarray(exit_labels),
      "exit_mask": jnp.asarray(modality, jnp.float32), "cond_mask": jnp.asarray(cond_mask)}


@nnx.jit
def loss_fn(model, batch, key):
  return model.loss(batch, key)


@nnx.jit
def forward(model, tokens, latents, modality):
  return model(tokens, latents, modality)


def test_config_from_dict_round_trip_and_errors():
  d = CFG.to_dict()
  assert LLaMoConfig.from_dict(json.loads(json.dumps(d))) == CFG
  with pytest.raises(ValueError, match="flow_widht"):
    LLaMoConfig.from_dict({**d, "flow_widht": 3})
  with pytest.raises(ValueError, match="split"):
    LLaMoConfig.from_dict({**d, "split": "attn"})


def test_text_only_logits_equal_base_llama_and_special_tokens_use_their_table():
  base = Llama(TINY, rngs=nnx.Rngs(0))
  model = LLaMo(CFG, rngs=nnx.Rngs(1))
  nnx.update(model, nnx.state(base, nnx.Param))
  tokens = jax.random.randint(jax.random.key(2), (2, 10), 0, TINY.vocab_size, dtype=jnp.int32)
  zeros = jnp.zeros((2, 10), jnp.int32)
  logits, h, _ = forward(model, tokens, jnp.zeros((2, 10, C)), zeros)
  np.testing.assert_array_equal(logits, nnx.jit(lambda m, x: m(x)[0])(base, tokens))
  assert h.shape == (2, 10, TINY.dim)
  emb = model.embed_inputs(jnp.array([[bom_id(CFG), eom_id(CFG), 5]]), jnp.ones((1, 3, C)),
                           jnp.array([[0, 0, 1]]))
  np.testing.assert_array_equal(emb[0, :2], model.special_embed.embedding[...])
  np.testing.assert_allclose(emb[0, 2], model.motion_in(jnp.ones((1, 1, C)))[0, 0], atol=1e-6)


def test_loss_terms_exit_bce_and_trainable_filter():
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  batch = make_batch()
  loss, metrics = loss_fn(model, batch, jax.random.key(0))
  np.testing.assert_allclose(loss, metrics["flow_loss"] + CFG.lambda_text * metrics["text_loss"]
                             + CFG.lambda_exit * metrics["exit_loss"], rtol=1e-6)
  assert int(metrics["route_overflow"]) == 0
  # Exit head: exit bias -> BCE of a constant logit is log(1+e^-b) on the 1 label, etc.
  model.exit_head.bias[...] = jnp.array([2.0])
  model.exit_head.kernel[...] = jnp.zeros_like(model.exit_head.kernel[...])
  _, m2 = loss_fn(model, batch, jax.random.key(0))
  expected = (np.log1p(np.exp(-2.0)) + 3 * np.log1p(np.exp(2.0))) / 4
  np.testing.assert_allclose(m2["exit_loss"], expected, rtol=1e-5)

  # Gradients of the joint stage reach only the selected params; the text expert stays frozen.
  trainable = trainable_filter("joint")
  grads = nnx.jit(nnx.grad(lambda m, b: m.loss(b, jax.random.key(0))[0],
                           argnums=nnx.DiffState(0, trainable)))(model, batch)
  names = {p[0] if p[0] != "layers" else "layers." + p[1] for p, _ in grads.flat_state()}
  assert names == {"layers.motion", "motion_in", "flow_head", "exit_head", "special_embed"}
  assert float(jnp.abs(grads["layers"]["motion"]["q"]["kernel"][...]).max()) > 0
  frozen = {p[0] for p, _ in nnx.state(model, nnx.All(nnx.Param, nnx.Not(trainable))).flat_state()}
  assert frozen == {"embed", "layers", "final_norm", "lm_head"}
  with pytest.raises(ValueError, match="stage"):
    trainable_filter("pretrain")


def test_prefill_then_decode_equals_full_forward_on_an_interleaved_sequence():
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  state = nnx.state(model.layers.motion, nnx.Param)
  nnx.update(model.layers.motion, jax.tree.map(lambda x: x * 1.1, state))
  batch = make_batch()
  tokens, latents, modality = batch["tokens"], batch["latents"], batch["modality"]
  full_logits, full_h, _ = model(tokens, latents, modality)
  n = 5  # prompt `[BOS] text [BOM]`, then motion m1..m4, [EOM], text one by one
  cache, logits, h = prefill(model, tokens[:, :n], latents[:, :n], modality[:, :n], max_len=16)
  np.testing.assert_allclose(h, full_h[:, n - 1], atol=1e-5)
  step = nnx.jit(decode_step)
  for p in range(n, tokens.shape[1]):
    cache, logits, h = step(model, cache, tokens[:, p], latents[:, p], modality[:, p],
                            jnp.full((2,), p, jnp.int32))
    np.testing.assert_allclose(logits, full_logits[:, p], atol=1e-4)
    np.testing.assert_allclose(h, full_h[:, p], atol=1e-5)


def test_cfg_dropout_hides_caption_from_motion_positions():
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  batch = make_batch()
  seg = batch["segment_ids"]
  dropped = jnp.where(batch["cond_mask"] > 0, -seg, seg)
  _, h, _ = model(batch["tokens"], batch["latents"], batch["modality"], batch["positions"], dropped)
  other = batch["tokens"].at[:, 1:4].set(7)
  _, h2, _ = model(other, batch["latents"], batch["modality"], batch["positions"], dropped)
  np.testing.assert_array_equal(h[:, 4:], h2[:, 4:])  # caption invisible to everything after it


def test_load_base_fills_text_path_and_copies_motion(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  from llamo_jax.data.tokenizer import Tokenizer
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.train_from_iterator(["a person walks forward"] * 4, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<s>", "</s>"],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
  (tmp_path / "tok").mkdir()
  tok.save(str(tmp_path / "tok" / "tokenizer.json"))
  (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"}))
  base = Llama(TINY, rngs=nnx.Rngs(5))
  pretrained.save_pretrained(tmp_path / "base", TINY, base, Tokenizer.load(tmp_path / "tok"))
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  load_base(model, str(tmp_path / "base"))
  tokens = jax.random.randint(jax.random.key(2), (1, 8), 0, TINY.vocab_size, dtype=jnp.int32)
  np.testing.assert_array_equal(model(tokens, jnp.zeros((1, 8, C)), jnp.zeros((1, 8), jnp.int32))[0],
                                base(tokens)[0])
  np.testing.assert_array_equal(model.layers.motion.down.kernel[...], base.layers.text.down.kernel[...])


def test_creates_sharded_on_a_tensor_parallel_mesh():
  from llamo_jax.core import sharding
  mesh = sharding.make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
  model = sharding.create_sharded(lambda: LLaMo(CFG, rngs=nnx.Rngs(0)), mesh)
  assert model.special_embed.embedding[...].shape == (2, TINY.dim)
  assert len(model.layers.motion.q.kernel[...].sharding.device_set) == 8


def test_first_latent_weight_weights_the_flow_target_at_bom():
  """first_latent_weight=w: the flow loss is (w e_0 + e_1 + ... + e_K-1) / (w + K - 1), e_0 the
  first latent's error (the target at [BOM], position 4 of make_batch)."""
  batch, key = make_batch(), jax.random.key(3)
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  plain = float(loss_fn(model, batch, key)[1]["flow_loss"])
  first_only = dict(batch, flow_mask=batch["flow_mask"].at[:, 5:].set(0))
  e0 = float(loss_fn(model, first_only, key)[1]["flow_loss"])
  model.config = dataclasses.replace(CFG, first_latent_weight=4.0)
  weighted = float(loss_fn(model, batch, key)[1]["flow_loss"])
  np.testing.assert_allclose(weighted, (4 * e0 + 4 * plain - e0) / 7, rtol=1e-5)
  assert abs(weighted - plain) > 1e-4
  with pytest.raises(ValueError, match="first_latent_weight must be positive"):
    dataclasses.replace(CFG, first_latent_weight=0.0)


def test_teacher_forcing_noise_fixed_or_drawn_per_sequence():
  """sigma_tf_schedule: "fixed" noises every sequence's latents with std sigma_tf; "uniform" draws
  each sequence's std from U(0, sigma_tf)."""
  seen = {}

  class Spy(LLaMo):
    def __call__(self, tokens, latents, *args, **kwargs):
      seen["latents"] = latents
      return super().__call__(tokens, latents, *args, **kwargs)

  batch = make_batch(b=64)
  motion = np.asarray(batch["modality"]) == 1
  stds = {}
  for schedule in ("fixed", "uniform"):
    cfg = LLaMoConfig(**{**CFG.__dict__, "sigma_tf": 2.0, "sigma_tf_schedule": schedule})
    Spy(cfg, rngs=nnx.Rngs(0)).loss(batch, jax.random.key(1))
    noise = np.asarray(seen["latents"] - batch["latents"])
    assert np.all(noise[~motion] == 0)  # text positions are never noised
    stds[schedule] = noise[motion].reshape(64, -1).std(axis=1)
  # 16 noise values per sequence: each std is estimated to about +-0.35 at std 2.
  assert 1.8 < stds["fixed"].mean() < 2.2 and stds["fixed"].min() > 1.0
  assert 0.7 < stds["uniform"].mean() < 1.3 and stds["uniform"].min() < 0.3
  with pytest.raises(ValueError, match="sigma_tf_schedule"):
    LLaMoConfig(**{**CFG.__dict__, "sigma_tf_schedule": "cosine"})


def test_bom_expert_motion_runs_bom_on_the_motion_expert_and_leaves_text_alone():
  """bom_expert="motion": the [BOM] position (whose h conditions the first latent) runs the trained
  motion expert, keeps its own embedding; every text position is as with "text"."""
  model = LLaMo(CFG, rngs=nnx.Rngs(0))
  moved = LLaMo(dataclasses.replace(CFG, bom_expert="motion"), rngs=nnx.Rngs(0))
  for m in (model, moved):  # the motion expert differs from the text expert, as after training
    state = nnx.state(m.layers.motion, nnx.Param)
    nnx.update(m.layers.motion, jax.tree.map(lambda x: x * 1.3, state))
  batch = make_batch()
  args = (batch["tokens"], batch["latents"], batch["modality"])
  _, h, _ = forward(model, *args)
  _, h2, _ = forward(moved, *args)
  np.testing.assert_array_equal(h[:, :4], h2[:, :4])                 # the caption: text expert in both
  assert float(jnp.abs(h[:, 4] - h2[:, 4]).max()) > 1e-3            # [BOM]: now the motion expert's
  expert = moved.experts(batch["tokens"], batch["modality"])
  np.testing.assert_array_equal(expert[:, 4:9], 1)
  np.testing.assert_array_equal(expert[:, :4], 0)
  np.testing.assert_array_equal(moved.embed_inputs(*args)[:, 4], model.embed_inputs(*args)[:, 4])
  # Prefill of `[BOS] text [BOM]` gives the same [BOM] state as the full forward.
  _, _, h_bom = prefill(moved, *(a[:, :5] for a in args), max_len=16)
  np.testing.assert_allclose(h_bom, h2[:, 4], atol=1e-5)
  _, metrics = loss_fn(moved, batch, jax.random.key(0))
  assert int(metrics["route_overflow"]) == 0
  with pytest.raises(ValueError, match="bom_expert"):
    LLaMoConfig.from_dict({**CFG.to_dict(), "bom_expert": "both"})


def test_two_forward_replaces_motion_inputs_by_the_models_own_predictions():
  """own_history: every motion input whose latent is a flow target (m1..mK of a T2M example) becomes
  the prediction made one position earlier; text, [BOM], [EOM] and other inputs stay."""
  model = LLaMo(dataclasses.replace(CFG, two_forward=1.0), rngs=nnx.Rngs(0))
  # A flow head whose velocity depends on h (its zero-initialised modulations and output would not).
  head = nnx.state(model.flow_head, nnx.Param)
  leaves, treedef = jax.tree.flatten(head)
  keys = jax.random.split(jax.random.key(9), len(leaves))
  nnx.update(model.flow_head, jax.tree.unflatten(
      treedef, [0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
  batch = make_batch()
  rng = jax.random.key(3)
  out = model.own_history(batch, batch["latents"], batch["segment_ids"], rng)
  np.testing.assert_array_equal(out[:, :5], batch["latents"][:, :5])
  np.testing.assert_array_equal(out[:, 9:], batch["latents"][:, 9:])
  _, h, _ = model(batch["tokens"], batch["latents"], batch["modality"], batch["positions"], batch["segment_ids"])
  x0 = jax.random.normal(jax.random.split(rng)[0], h.shape[:-1] + (C,))
  want = flow_lib.integrate_head(model.flow_head, h, x0, steps=4)
  np.testing.assert_allclose(out[:, 5:9], want[:, 4:8], atol=1e-5)  # [BOM]..m3 predict m1..m4
  assert float(jnp.abs(out[:, 5:9] - batch["latents"][:, 5:9]).min()) > 0
  # A second pass predicts from the first one's inputs: m2's input now comes from a predicted m1.
  again = model.own_history(batch, out, batch["segment_ids"], rng)
  _, h1, _ = model(batch["tokens"], out, batch["modality"], batch["positions"], batch["segment_ids"])
  np.testing.assert_allclose(again[:, 5:9], flow_lib.integrate_head(model.flow_head, h1, x0, steps=4)[:, 4:8],
                             atol=1e-5)
  np.testing.assert_allclose(again[:, 5], out[:, 5], atol=1e-5)  # m1 depends on text only
  assert float(jnp.abs(again[:, 6:9] - out[:, 6:9]).max()) > 1e-4
  # The head runs on the motion buffer's R rows only (flow_rows): R = 4 motion tokens of T = 14
  # give the same predictions as the head on every position.
  capped = LLaMo(dataclasses.replace(CFG, two_forward=1.0, motion_capacity=4), rngs=nnx.Rngs(0))
  nnx.update(capped, nnx.state(model))
  rows = capped.flow_rows(batch["flow_mask"])
  assert rows.shape == (2, 4) and (np.sort(np.asarray(rows), axis=1) == np.arange(4, 8)).all()
  np.testing.assert_allclose(capped.own_history(batch, batch["latents"], batch["segment_ids"], rng), out,
                             atol=1e-5, rtol=1e-5)
  half = LLaMo(dataclasses.replace(CFG, two_forward=0.5), rngs=nnx.Rngs(0))
  loss, metrics = loss_fn(half, batch, jax.random.key(0))
  assert np.isfinite(float(loss))
  twice = LLaMo(dataclasses.replace(CFG, two_forward=0.5, two_forward_passes=2), rngs=nnx.Rngs(0))
  loss2, _ = loss_fn(twice, batch, jax.random.key(0))
  assert np.isfinite(float(loss2)) and float(loss2) != float(loss)
  with pytest.raises(ValueError, match="two_forward"):
    LLaMoConfig.from_dict({**CFG.to_dict(), "two_forward": 1.5})
  with pytest.raises(ValueError, match="two_forward_passes"):
    LLaMoConfig.from_dict({**CFG.to_dict(), "two_forward_passes": 0})
