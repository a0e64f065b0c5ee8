"""Train state of a stage, built already sharded: model, trainable/frozen split, optimizer state."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from llamo_jax.core import sharding
from llamo_jax.training import optimizer as optimizer_lib
from llamo_jax.training.stages import Stage
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.task import Task


def build_model(config: ml_collections.ConfigDict, task: Task, mesh: jax.sharding.Mesh,
                rules: Any) -> nnx.Module:
  """The task's model created in its shardings (eval_shape -> shardings -> jit), pretrained parts loaded."""
  model = sharding.create_sharded(lambda: task.make_model(nnx.Rngs(config.seed)), mesh, rules)
  task.load_pretrained(model)
  return model


def stage_state(task: Task, model: nnx.Module, stage: Stage, mesh: jax.sharding.Mesh, step: int
                ) -> tuple[nnx.GraphDef, dict[str, Any], optax.GradientTransformation, optax.Schedule]:
  """Train state {step, params, opt_state, frozen} of `model` for `stage` (the task is set to it).

  Only `task.trainable` params get optimizer state, created in their shardings; the
  rest is carried frozen. Called at the start of every stage with the previous
  stage's weights, so each stage starts with a fresh optimizer over its own partition.
  """
  task.set_stage(stage)
  graphdef, params, frozen = nnx.split(model, task.trainable, ...)
  if not jax.tree.leaves(params):
    raise ValueError(f"Stage {stage.name!r} selects no trainable parameters; check the task's stage filters.")
  tx, schedule = optimizer_lib.make_optimizer(stage.optimizer, stage.end - stage.start, params)
  param_shardings = jax.tree.map(lambda x: x.sharding, params)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  opt_shardings = optax.tree_map_params(
      tx, lambda _, s: s, jax.eval_shape(tx.init, params), param_shardings,
      transform_non_params=lambda _: replicated,
      is_leaf=lambda x: isinstance(x, nnx.Variable))
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  state = {"step": jax.device_put(jnp.asarray(step, jnp.int32), replicated),
           "params": params, "opt_state": opt_state, "frozen": frozen}
  return graphdef, state, tx, schedule


def init_train_state(config: ml_collections.ConfigDict, task: Task, mesh: jax.sharding.Mesh,
                     rules: Any, stage: Stage | None = None
                     ) -> tuple[nnx.GraphDef, dict[str, Any], optax.GradientTransformation,
                                optax.Schedule]:
  """Fresh train state of `stage` (default: the first), every array created in its sharding."""
  stage = stage_plan(config)[0] if stage is None else stage
  task.set_stage(stage)
  return stage_state(task, build_model(config, task, mesh, rules), stage, mesh, stage.start)


def abstract_of(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a tree of arrays: a restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
