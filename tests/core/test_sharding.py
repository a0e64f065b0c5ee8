"""Mesh, logical axis rules, sharded creation; sharded == single-device on 8 CPUs."""
import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from llamo_jax.core import sharding
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama, init_cache

TINY = presets.get_preset("tiny")


@pytest.fixture(autouse=True)
def _needs_8_devices():
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: tests/conftest.py sets "
                "XLA_FLAGS=--xla_force_host_platform_device_count=8 before jax is imported")


# ----------------------------------------------------------------- mesh and rules

def test_make_mesh_fills_minus_one_and_adds_absent_axes():
  mesh = sharding.make_mesh({"data": -1, "tensor": 2})
  assert dict(mesh.shape) == {"replica": 1, "data": 4, "fsdp": 1, "tensor": 2}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
  mesh = sharding.make_mesh({"fsdp": 2, "data": 2}, devices=jax.devices()[:4])
  assert dict(mesh.shape) == {"replica": 1, "data": 2, "fsdp": 2, "tensor": 1}


@pytest.mark.parametrize("shape,match", [
    ({"model": 8}, "Unknown mesh axes"),
    ({"data": 3}, "needs 3 devices"),
    ({"data": -1, "fsdp": -1}, "at most one -1"),
    ({"data": -1, "fsdp": 3}, "not divisible"),
])
def test_make_mesh_errors(shape, match):
  with pytest.raises(ValueError, match=match):
    sharding.make_mesh(shape)


def test_rules_from_config_overrides_and_appends():
  assert sharding.rules_from_config(None) == sharding.DEFAULT_RULES
  rules = dict(sharding.rules_from_config([["heads", None], ("embed", ["fsdp", "data"]),
                                           ("latent", "tensor")]))
  assert rules["heads"] is None and rules["embed"] == ("fsdp", "data")
  assert rules["latent"] == "tensor" and rules["mlp"] == "tensor"
  with pytest.raises(ValueError, match="mesh axes must be from"):
    sharding.rules_from_config([("heads", "model")])
  with pytest.raises(ValueError, match="must be a pair"):
    sharding.rules_from_config([("heads",)])


def test_logical_to_spec():
  spec = sharding.logical_to_spec(("layers", "embed", "heads", "head_dim"))
  assert spec == P(None, "fsdp", "tensor", None)
  assert sharding.logical_to_spec(("batch", None)) == P(("replica", "data", "fsdp"), None)
  with pytest.raises(ValueError, match="no sharding rule"):
    sharding.logical_to_spec(("joints",))
  with pytest.raises(ValueError, match="two dims of one array"):
    sharding.logical_to_spec(("heads", "mlp"))


def test_batch_sharding():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  s = sharding.batch_sharding(mesh)
  x = jax.device_put(np.zeros((8, 3), np.float32), s)
  assert x.addressable_shards[0].data.shape == (2, 3)


# ----------------------------------------------------------------- state shardings

def test_indivisible_dim_is_a_clear_error_and_rule_override_fixes_it():
  mesh = sharding.make_mesh({"tensor": 4, "data": -1})  # TINY has 2 kv heads
  abstract = nnx.state(nnx.eval_shape(lambda: Llama(TINY, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match=r"layers\.text\.k\.kernel .*'kv_heads'=2 .*size 4"):
    sharding.state_shardings(abstract, mesh)
  rules = sharding.rules_from_config([("kv_heads", None)])
  shardings = sharding.state_shardings(abstract, mesh, rules)
  assert shardings["layers"]["text"]["k"]["kernel"].get_value().spec == P(None, "fsdp", None, None)


def test_param_without_logical_axes_is_an_error():
  class Bare(nnx.Module):
    def __init__(self):
      self.w = nnx.Param(jnp.zeros((8, 8)))
      self.count = nnx.BatchStat(jnp.zeros(()))

  mesh = sharding.make_mesh({"fsdp": -1})
  with pytest.raises(ValueError, match="w .*no logical axis names"):
    sharding.state_shardings(nnx.state(Bare()), mesh)


# ----------------------------------------------------------------- sharded == single device

def _loss_fn(model, tokens):
  logits = model(tokens)[0]
  logp = jax.nn.log_softmax(logits[:, :-1])
  return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean(), logits


@nnx.jit
def _loss_and_grads(model, tokens):
  (loss, logits), grads = nnx.value_and_grad(_loss_fn, has_aux=True)(model, tokens)
  return loss, logits, grads


@pytest.fixture(scope="module")
def reference():
  cfg = dataclasses.replace(TINY, tie_embeddings=True)  # tied: embedding is used twice
  tokens = jax.random.randint(jax.random.key(1), (8, 16), 0, cfg.vocab_size, jnp.int32)
  model = Llama(cfg, rngs=nnx.Rngs(0))
  loss, logits, grads = _loss_and_grads(model, tokens)
  return cfg, tokens, (loss, logits, grads)


@pytest.mark.parametrize("mesh_shape", [{"data": 2, "fsdp": 2, "tensor": 2}, {"fsdp": 8}])
def test_sharded_forward_loss_and_grads_match_single_device(reference, mesh_shape):
  cfg, tokens, (ref_loss, ref_logits, ref_grads) = reference
  mesh = sharding.make_mesh(mesh_shape)
  with sharding.mesh_context(mesh):
    model = sharding.create_sharded(lambda: Llama(cfg, rngs=nnx.Rngs(0)), mesh)
    params = nnx.state(model, nnx.Param)
    for path, v in params.flat_state():
      arr = v.get_value()
      # Every tiny param has an `embed` dim (64, divisible by fsdp); none may be
      # left whole on a device, and under pure FSDP each device holds 1/8.
      assert not arr.sharding.is_fully_replicated, path
      if mesh_shape == {"fsdp": 8}:
        assert arr.addressable_shards[0].data.size * 8 == arr.size, path
    loss, logits, grads = _loss_and_grads(
        model, jax.device_put(tokens, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(logits, ref_logits, atol=2e-5)
  for (path, g), r in zip(nnx.to_flat_state(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(g.get_value(), r, atol=1e-6, rtol=1e-4, err_msg=str(path))


def test_abstract_state_carries_shardings_and_allocates_nothing():
  mesh = sharding.make_mesh({"fsdp": 8})
  graphdef, state = sharding.abstract_state(lambda: Llama(TINY, rngs=nnx.Rngs(0)), mesh)
  emb = state["embed"]["embedding"].get_value()
  assert isinstance(emb, jax.ShapeDtypeStruct)
  assert emb.sharding.spec == P("tensor", "fsdp")  # tensor has size 1 here
  assert isinstance(graphdef, nnx.GraphDef)


def test_constrain_is_a_noop_without_mesh_and_shards_batch_with_one():
  x = jnp.ones((8, 4, 16))
  assert sharding.constrain(x, ("batch", "length", None)) is x
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  rules = sharding.rules_from_config([("length", "tensor")])
  with sharding.mesh_context(mesh, rules):
    assert sharding.active_rules() == rules
    w = jax.jit(lambda x: sharding.constrain(x * 2, ("batch", "length", None)))(x)
  assert w.addressable_shards[0].data.shape == (2, 2, 16)  # the context's rules applied
  with jax.set_mesh(mesh):
    y = jax.jit(lambda x: sharding.constrain(x * 2, ("batch", "length", None)))(x)
    # batch 3 is not divisible by 4 devices: the hint leaves that dim whole.
    z = jax.jit(lambda x: sharding.constrain(x * 2, ("batch", None)))(jnp.ones((3, 4)))
  assert y.addressable_shards[0].data.shape == (2, 4, 16)  # 8 rows over data*fsdp=4
  assert z.addressable_shards[0].data.shape == (3, 4)


def test_sharded_prefill_and_decode_match_single_device_forward(reference):
  cfg, tokens, (_, ref_logits, _) = reference
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  step = nnx.jit(lambda model, tokens, cache: model(tokens, cache=cache))
  with jax.set_mesh(mesh):
    model = sharding.create_sharded(lambda: Llama(cfg, rngs=nnx.Rngs(0)), mesh)
    cache = init_cache(cfg, batch=8, max_len=16)
    logits, cache = step(model, tokens[:, :14], cache)
    outs = [logits]
    for t in (14, 15):
      logits, cache = step(model, tokens[:, t:t + 1], cache)
      outs.append(logits)
  assert not cache.k.sharding.is_fully_replicated  # batch and kv heads split
  np.testing.assert_allclose(jnp.concatenate(outs, axis=1), ref_logits, atol=2e-5)


def test_global_batch_must_split_over_the_data_parallel_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  assert sharding.batch_shards(mesh) == 4  # batch -> (replica, data, fsdp)
  sharding.check_global_batch(8, mesh)
  sharding.check_global_batch(16, mesh, grad_accum_steps=4)
  with pytest.raises(ValueError, match=r"global batch of 6 .* 4 data-parallel devices .* multiple of 4 \(e.g. 4 or 8\)"):
    sharding.check_global_batch(6, mesh)
  with pytest.raises(ValueError, match=r"in 4 microbatches .* multiple of 16"):
    sharding.check_global_batch(8, mesh, grad_accum_steps=4)
  sharding.check_global_batch(2, mesh, sharding.rules_from_config([("batch", "data")]))
