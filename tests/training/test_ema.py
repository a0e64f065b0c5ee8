"""The weight EMA's pieces: its update, its per-stage decay, and resuming runs from before it."""
import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from etils import epath
from flax import nnx

from llamo_jax.training import runs
from llamo_jax.training import train_step
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.state import ema_model


class _Two(nnx.Module):
  def __init__(self):
    self.a = nnx.Param(jnp.zeros((2,)))
    self.b = nnx.Param(jnp.full((2,), 5.0))


def test_the_update_moves_only_the_trained_entries_with_a_warming_decay():
  trained = nnx.All(nnx.Param, nnx.PathContains("a"))
  ema = nnx.state(_Two(), nnx.Param)
  params = nnx.State({"a": nnx.Param(jnp.ones((2,)))})
  for n, decay in ((0, 0.1), (5, 0.4), (1000, 0.99)):  # d = min(0.99, (1 + n) / (10 + n))
    out = train_step._update_ema(ema, params, trained, 0.99, jnp.asarray(n))
    np.testing.assert_allclose(out["a"].value, np.full(2, 1 - decay), rtol=1e-6)
    np.testing.assert_array_equal(out["b"].value, np.full(2, 5.0))


def test_the_model_with_the_average_leaves_the_trained_weights_alone():
  graphdef, params = nnx.split(_Two())
  state = {"params": params, "frozen": nnx.State({}), "ema": nnx.State({"a": nnx.Param(jnp.full((2,), 7.0))})}
  model = ema_model(graphdef, state)
  np.testing.assert_array_equal(model.a[...], np.full(2, 7.0))
  np.testing.assert_array_equal(model.b[...], np.full(2, 5.0))
  np.testing.assert_array_equal(state["params"]["a"][...], np.zeros(2))  # what the next step trains


def _staged(ema_decay=0.0, **stage_decays):
  config = ml_collections.ConfigDict(dict(
      ema_decay=ema_decay, optimizer=dict(lr=1.0), stage_order=("one", "two"),
      stages=dict(one=dict(steps=2), two=dict(steps=3))))
  for name, decay in stage_decays.items():
    config.stages[name].ema_decay = decay
  return config


def test_a_stage_may_set_its_own_decay_and_a_bad_one_is_refused():
  assert [s.ema_decay for s in stage_plan(_staged(0.9))] == [0.9, 0.9]
  assert [s.ema_decay for s in stage_plan(_staged(0.9, two=0.0))] == [0.9, 0.0]
  with pytest.raises(ValueError, match=r"config.stages.one.ema_decay=1.0 .* \[0, 1\)"):
    stage_plan(_staged(one=1.0))
  with pytest.raises(ValueError, match=r"config.ema_decay=-0.1"):
    stage_plan(_staged(-0.1))


def test_runs_saved_before_the_key_resume_with_it_off_and_refuse_it_on(tmp_path):
  workdir = epath.Path(tmp_path)
  old = {"task": "lm", "pipeline": {"lm": {"total_steps": 3}}, "total_steps": 3}
  (workdir / "config.json").write_text(json.dumps(old))
  new = ml_collections.ConfigDict(dict(old, ema_decay=0.0))
  new.pipeline.lm.ema_decay = 0.0
  runs.check_config_against_workdir(new, workdir)
  new.pipeline.lm.ema_decay = 0.99
  with pytest.raises(ValueError, match=r"keys \['pipeline'\] differ"):
    runs.check_config_against_workdir(new, workdir)
