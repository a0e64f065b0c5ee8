"""Train state of a stage, built already sharded: model, trainable/frozen split, optimizer state.

Weight EMA: where a stage sets `ema_decay` (config.ema_decay, or config.stages.NAME.ema_decay),
the state also carries `ema`, an exponential moving average of every parameter that some stage
of the run trains (one tree for the whole run, so its checkpoints restore in any stage). A
stage's step averages the parameters it trains, ema = d * ema + (1 - d) * params, with
d = min(ema_decay, (1 + n) / (10 + n)) at the stage's n-th step; the others keep their value.
Training never reads the average: the trained weights are those of a run without it. The
evaluations during training, and every restore for use (`runs.restore`: sampling, evaluation,
export), read the model with the average in place of the trained weights (`ema_model`).
"""
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


def ema_filter(config: ml_collections.ConfigDict, task: Task) -> Any | None:
  """The nnx filter of the parameters the weight EMA tracks: those any stage of the run trains
  (module docstring). None where no stage keeps an EMA. Leaves the task's stage unset: callers
  set it (`stage_state`)."""
  plan = stage_plan(config)
  if not any(stage.ema_decay for stage in plan):
    return None
  filters = []
  for stage in plan:
    task.set_stage(stage)
    filters.append(task.trainable)
  return nnx.Any(*filters)


def stage_state(task: Task, model: nnx.Module, stage: Stage, mesh: jax.sharding.Mesh, step: int,
                averaged: Any | None = None, ema: nnx.State | None = None
                ) -> tuple[nnx.GraphDef, dict[str, Any], optax.GradientTransformation, optax.Schedule]:
  """Train state {step, params, opt_state, frozen[, ema]} of `model` for `stage` (the task is set to it).

  Only `task.trainable` params get optimizer state, created in their shardings; the
  rest is carried frozen. Called at the start of every stage with the previous
  stage's weights, so each stage starts with a fresh optimizer over its own partition.
  With `averaged` (`ema_filter`'s filter) the state carries the weight EMA: `ema`, the previous
  stage's, or else a copy of the model's weights.
  """
  if averaged is not None and ema is None:
    ema = jax.tree.map(lambda x: x.copy(), nnx.split(model, averaged, ...)[1])  # own buffers: donated
  task.set_stage(stage)
  graphdef, params, frozen = _split_for_stage(model, task, stage)
  tx, schedule, opt_shardings, replicated = _optimizer_layout(stage, params, mesh)
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
  state = {"step": jax.device_put(jnp.asarray(step, jnp.int32), replicated),
           "params": params, "opt_state": opt_state, "frozen": frozen}
  if averaged is not None:
    state["ema"] = ema
  return graphdef, state, tx, schedule


def ema_model(graphdef: nnx.GraphDef, state: dict[str, Any]) -> nnx.Module:
  """The model of a train state, with the weight EMA in place of the trained weights where the
  state keeps one (module docstring)."""
  if "ema" not in state:
    return nnx.merge(graphdef, state["params"], state["frozen"])
  # New Variables (the arrays are shared): merged without a copy, the model's Variables are the
  # state's, and the update would write the average into the weights being trained.
  model = nnx.merge(graphdef, state["params"], state["frozen"], copy=True)
  nnx.update(model, state["ema"])
  return model


def abstract_stage_state(config: ml_collections.ConfigDict, task: Task, stage: Stage,
                         mesh: jax.sharding.Mesh, rules: Any
                         ) -> tuple[nnx.GraphDef, dict[str, Any], optax.GradientTransformation, optax.Schedule]:
  """`stage_state` of a fresh model as ShapeDtypeStructs with their shardings: nothing is
  allocated (ahead-of-time compiles, llamo_jax/train_compile.py). Same layout as the
  trainer's state: same split, optimizer and shardings."""
  averaged = ema_filter(config, task)
  task.set_stage(stage)
  # jax.eval_shape, not nnx.eval_shape (see sharding.abstract_state); the graphdef is static.
  graphdef, params, frozen = jax.eval_shape(
      lambda: _split_for_stage(task.make_model(nnx.Rngs(config.seed)), task, stage))

  def with_shardings(tree):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, sharding.state_shardings(tree, mesh, rules))

  params, frozen = with_shardings(params), with_shardings(frozen)
  tx, schedule, opt_shardings, replicated = _optimizer_layout(stage, params, mesh)
  # Shardings are a prefix of the state (a masked-out subtree has one sharding, no leaves).
  opt_state = jax.tree.map(
      lambda s, sub: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), sub),
      opt_shardings, jax.eval_shape(tx.init, params))
  state = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
           "params": params, "opt_state": opt_state, "frozen": frozen}
  if averaged is not None:
    state["ema"] = with_shardings(jax.eval_shape(
        lambda: nnx.split(task.make_model(nnx.Rngs(config.seed)), averaged, ...)[1]))
  return graphdef, state, tx, schedule


def _split_for_stage(model: nnx.Module, task: Task, stage: Stage):
  graphdef, params, frozen = nnx.split(model, task.trainable, ...)
  if not jax.tree.leaves(params):
    raise ValueError(f"Stage {stage.name!r} selects no trainable parameters; check the task's stage filters.")
  return graphdef, params, frozen


def _optimizer_layout(stage: Stage, params: Any, mesh: jax.sharding.Mesh):
  """(tx, schedule, shardings of tx.init(params), the replicated sharding): optimizer state
  shards like its params; counters and other non-param leaves are replicated."""
  tx, schedule = optimizer_lib.make_optimizer(stage.optimizer, stage.end - stage.start, params)
  param_shardings = jax.tree.map(lambda x: x.sharding, params)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  out = {}

  def layout():  # traced, not run: tree_map_params calls tx.init, and nothing may execute on
    # the compile-only devices of a topology (train_compile)
    out["shardings"] = optax.tree_map_params(
        tx, lambda _, s: s, jax.eval_shape(tx.init, params), param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, nnx.Variable))
    return ()

  jax.eval_shape(layout)
  return tx, schedule, out["shardings"], replicated


def init_train_state(config: ml_collections.ConfigDict, task: Task, mesh: jax.sharding.Mesh,
                     rules: Any, stage: Stage | None = None
                     ) -> tuple[nnx.GraphDef, dict[str, Any], optax.GradientTransformation,
                                optax.Schedule]:
  """Fresh train state of `stage` (default: the first), every array created in its sharding."""
  stage = stage_plan(config)[0] if stage is None else stage
  averaged = ema_filter(config, task)
  task.set_stage(stage)
  return stage_state(task, build_model(config, task, mesh, rules), stage, mesh, stage.start, averaged)


def abstract_of(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a tree of arrays: a restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
