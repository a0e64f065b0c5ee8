"""Flow-matching head: zero init, toy training + sampling, CFG, Euler vs Heun."""
from flax import nnx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from llamo_jax.models import flow_head as fh


def test_zero_initialised_output_gives_zero_velocity():
  head = fh.FlowHead(4, 8, 32, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (3, 5, 4))
  v = head(x, jnp.full((3, 5), 0.3), jax.random.normal(jax.random.key(2), (3, 5, 8)))
  assert v.shape == (3, 5, 4)
  np.testing.assert_array_equal(v, 0.0)


def test_flow_loss_is_masked_and_matches_definition_at_init():
  head = fh.FlowHead(2, 4, 16, 1, rngs=nnx.Rngs(0))
  z = jnp.zeros((1, 3, 2)).at[0, 1].set(100.0)
  h = jnp.ones((1, 3, 4))
  # f == 0 at init, so the loss is E||z - eps||^2 / C; masking the huge token out drops it.
  masked = fh.flow_loss(head, z, h, jnp.array([[1.0, 0.0, 1.0]]), jax.random.key(0), k_t=64)
  assert 0.7 < float(masked) < 1.3  # E[eps^2] = 1
  full = fh.flow_loss(head, z, h, jnp.ones((1, 3)), jax.random.key(0), k_t=4)
  assert float(full) > 1000


def _train_toy_head(steps=200):
  """2-D latents z ~ N(mu(h), 0.05^2) with mu = 2*h[:2]; condition h in R^4."""
  head = fh.FlowHead(2, 4, 64, 2, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(head, optax.adam(3e-3), wrt=nnx.Param)

  def data(key):
    kh, kz = jax.random.split(key)
    h = jax.random.normal(kh, (1, 128, 4))
    z = 2 * h[..., :2] + 0.05 * jax.random.normal(kz, (1, 128, 2))
    return z, h

  @nnx.jit
  def step(head, opt, key):
    kd, kl = jax.random.split(key)
    z, h = data(kd)
    loss, grads = nnx.value_and_grad(
        lambda m: fh.flow_loss(m, z, h, jnp.ones((1, 128)), kl))(head)
    opt.update(head, grads)
    return loss

  losses = [float(step(head, opt, k)) for k in jax.random.split(jax.random.key(3), steps)]
  return head, losses


def test_toy_training_decreases_loss_and_samplers_land_near_the_target():
  head, losses = _train_toy_head()
  assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
  h = jnp.array([[1.0, -0.5, 0.3, 0.0], [-1.0, 0.8, 0.0, 0.5]])
  target = 2 * h[:, :2]
  for method in ("euler", "heun"):
    z = fh.sample(head, jnp.repeat(h, 64, axis=0), jax.random.key(4), steps=20, method=method)
    mean = z.reshape(2, 64, 2).mean(axis=1)
    np.testing.assert_allclose(mean, target, atol=0.25, err_msg=method)
  # Temperature 0 starts at the noise mean: a deterministic point close to the target mean.
  z0 = fh.sample(head, h, jax.random.key(5), steps=20, temperature=0.0)
  np.testing.assert_allclose(z0, target, atol=0.3)


def test_cfg_scale_one_equals_conditional_and_zero_equals_unconditional():
  head = fh.FlowHead(3, 4, 16, 2, rngs=nnx.Rngs(0))
  # Non-zero output layer and modulation so the velocity depends on h.
  state = nnx.state(head, nnx.Param)
  state = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
                       state)
  nnx.update(head, state)
  h, hu = jax.random.normal(jax.random.key(1), (2, 5, 4))
  key = jax.random.key(2)
  cond = fh.sample(head, h, key, steps=8)
  uncond = fh.sample(head, hu, key, steps=8)
  np.testing.assert_allclose(fh.sample(head, h, key, h_uncond=hu, cfg_scale=1.0, steps=8),
                             cond, atol=1e-5)
  np.testing.assert_allclose(fh.sample(head, h, key, h_uncond=hu, cfg_scale=0.0, steps=8),
                             uncond, atol=1e-5)
  assert np.abs(cond - uncond).max() > 1e-3
  assert np.abs(fh.sample(head, h, key, h_uncond=hu, cfg_scale=3.0, steps=8) - cond).max() > 1e-3


def test_heun_beats_euler_on_a_known_linear_flow():
  a = jnp.array([-1.5, 0.7, 2.0])
  x0 = jnp.array([1.0, -2.0, 0.5])
  exact = x0 * jnp.exp(a)  # dx/dt = a x
  velocity = lambda x, t: a * x
  for steps in (5, 10):
    err_euler = np.abs(fh.integrate(velocity, x0, steps=steps, method="euler") - exact).max()
    err_heun = np.abs(fh.integrate(velocity, x0, steps=steps, method="heun") - exact).max()
    assert err_heun < 0.2 * err_euler, (steps, err_euler, err_heun)
  # Euler with 1 step is exactly x0 + v(x0, 0).
  np.testing.assert_allclose(fh.integrate(velocity, x0, steps=1), x0 + a * x0, rtol=1e-6)
  with pytest.raises(ValueError, match="rk4"):
    fh.integrate(velocity, x0, method="rk4")


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("guided", [False, True])
def test_integrate_head_equals_integrating_the_head_step_by_step(method, guided):
  head = fh.FlowHead(3, 4, 16, 2, rngs=nnx.Rngs(0))
  state = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
                       nnx.state(head, nnx.Param))
  nnx.update(head, state)
  h, hu = jax.random.normal(jax.random.key(1), (2, 2, 5, 4))
  x0 = jax.random.normal(jax.random.key(2), (2, 5, 3))
  kw = dict(h_uncond=hu if guided else None, cfg_scale=2.5 if guided else 1.0)
  reference = fh.integrate(fh.guided_velocity(head, h, **kw), x0, steps=7, method=method)
  fast = jax.jit(lambda: fh.integrate_head(head, h, x0, steps=7, method=method, **kw))()
  np.testing.assert_allclose(fast, reference, atol=1e-5)
  assert np.abs(reference - x0).max() > 1e-2  # the flow moved the points


def _random_head(c=3, d=4, w=16, depth=2):
  """A head with every parameter random (the zero-initialised ones too: a zero head samples its noise)."""
  head = fh.FlowHead(c, d, w, depth, rngs=nnx.Rngs(0))
  state = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(x.size), x.shape),
                       nnx.state(head, nnx.Param))
  nnx.update(head, state)
  return head


def _dots(jaxpr):
  """(lhs dtype, rhs dtype, out dtype) of every dot_general in a closed jaxpr, inner loops included."""
  out = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      out.append((eqn.invars[0].aval.dtype, eqn.invars[1].aval.dtype, eqn.outvars[0].aval.dtype))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      out += _dots(sub)
  return out


def test_bfloat16_sampling_state_runs_the_big_matmuls_in_bf16_and_keeps_the_ode_f32():
  head = _random_head()
  graphdef, state = nnx.split(head)
  assert fh.sampling_state(state, "float32") is state
  bf16 = fh.sampling_state(state, "bfloat16")
  # Training's head is untouched: the cast is a copy.
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(head)))
  h, hu = jax.random.normal(jax.random.key(1), (2, 5, 4))
  x0 = jax.random.normal(jax.random.key(2), (5, 3))

  def ode(s):
    return fh.integrate_head(nnx.merge(graphdef, s), h, x0, h_uncond=hu, cfg_scale=2.5, steps=7)

  dots = {name: _dots(jax.make_jaxpr(ode)(s).jaxpr) for name, s in (("f32", state), ("bf16", bf16))}
  f32, bf = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)
  # time_fc1, time_fc2, cond_proj, 2 block modulations, final_modulation, then in the loop
  # in_proj, 2 x (fc1, fc2), out_proj: 12 matmuls.
  assert len(dots["f32"]) == len(dots["bf16"]) == 12
  assert all(d == (f32, f32, f32) for d in dots["f32"])
  # bfloat16: the 3 modulations and 4 MLP matmuls take bf16 operands and accumulate in f32; the
  # conditioning (3) and the thin ends (in_proj, out_proj) stay f32.
  assert dots["bf16"].count((bf, bf, f32)) == 7
  assert dots["bf16"].count((f32, f32, f32)) == 5
  out = jax.eval_shape(ode, bf16)
  assert out.dtype == jnp.float32 and out.shape == x0.shape


def test_bfloat16_ode_stays_close_to_float32():
  """bf16 rounds each matmul operand to 8 significant bits (2^-9 = 0.2% relative) and f32
  accumulation adds no error of its own, so a velocity's few chained matmuls leave it ~0.5%
  off, CFG (w = 2.5) amplifies the branches' errors up to 1 + 2w = 6x, and Euler sums them
  over t in [0,1] with changing signs (0.3% of the displacement here). 2% of how far the flow
  moved the points is that bound with room; 0 would mean no bf16 ran."""
  head = _random_head(c=8, d=16, w=64, depth=3)
  graphdef, state = nnx.split(head)
  h, hu = jax.random.normal(jax.random.key(3), (2, 32, 16))
  x0 = jax.random.normal(jax.random.key(4), (32, 8))

  @jax.jit
  def ode(s):
    return fh.integrate_head(nnx.merge(graphdef, s), h, x0, h_uncond=hu, cfg_scale=2.5, steps=20)

  ref, low = np.asarray(ode(state)), np.asarray(ode(fh.sampling_state(state, "bfloat16")))
  moved = np.abs(ref - np.asarray(x0)).max()
  err = np.abs(low - ref).max()
  assert moved > 0.5, "the flow must move the points for the test to mean anything"
  assert 0 < err < 0.02 * moved, (err, moved)


def test_unknown_compute_dtype_names_the_choices():
  _, state = nnx.split(_random_head())
  with pytest.raises(ValueError, match=r"'float16'.*\('float32', 'bfloat16'\)"):
    fh.sampling_state(state, "float16")
