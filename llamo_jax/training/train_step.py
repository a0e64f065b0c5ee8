"""The train step every task shares: built, jitted with the state's shardings, compiled, FLOPs counted.

`make_train_step` is the pure step (loss, gradients with optional accumulation, optimizer
update, one finite flag); `compile_train_step` jits it as the trainer runs it (shardings,
donation) and compiles it for arrays or ShapeDtypeStructs; `step_flops` counts what one
step executes per device, also where XLA's cost analysis cannot: it counts a while loop's
body once, so a step with scanned layers (scan_layers) or gradient accumulation (a scan over
microbatches) is undercounted. `step_flops` compiles the same step with 1 and 2 unscanned
layers and one microbatch instead: FLOPs(L) = f1 + (L-1)(f2-f1), times the microbatches
(remat recomputation included: the FLOPs XLA executes). The trainer (its logged MFU) and
train_compile (its report) both use it. On TPU the partitioner can add loops of its own
(windowed einsums: FSDP all-gathers and reduce-scatters fused with their matmuls, seen on
v5p-64), so the variants are compiled without them (`TPU_FLOP_COUNT_OPTIONS`). `step_flops`
counts the while loops still left in its compiles (`compiled_loops`), and where there are any
its figure is a lower bound.
"""
from __future__ import annotations

import re
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from etils import epath
from flax import nnx

from llamo_jax.core import sharding
from llamo_jax.training import runs
from llamo_jax.training.stages import Stage
from llamo_jax.training.state import abstract_stage_state
from llamo_jax.training.task import Task


def make_train_step(task: Task, graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, grad_accum_steps: int, base_rng: int | jax.Array,
                    stage_start: int = 0, ema_decay: float = 0.0):
  """The pure train step: (state, batch) -> (state, metrics). Jitted by the caller.

  The schedule runs on steps since `stage_start` (each stage has a fresh optimizer). A state
  with `ema` gets its weight EMA updated at `ema_decay` (llamo_jax/training/state.py).
  `base_rng`: a key, or an int seed made into one inside the step (then nothing runs
  eagerly: train_compile traces for devices it cannot run on).
  """

  def loss_and_grads(params, frozen, batch, rng):
    def loss_fn(p):
      model = nnx.merge(graphdef, p, frozen)
      return task.loss(model, batch, rng)
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  def train_step(state, batch):
    step = state["step"]
    key = jax.random.key(base_rng) if isinstance(base_rng, int) else base_rng
    rng = jax.random.fold_in(key, step)
    if grad_accum_steps == 1:
      (loss, metrics), grads = loss_and_grads(state["params"], state["frozen"], batch, rng)
    else:
      micro = jax.tree.map(
          lambda x: x.reshape((grad_accum_steps, x.shape[0] // grad_accum_steps) + x.shape[1:]), batch)

      def body(carry, xs):
        i, mb = xs
        (l, m), g = loss_and_grads(state["params"], state["frozen"], mb, jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (l, m, g)), None

      zeros = jax.eval_shape(loss_and_grads, state["params"], state["frozen"],
                             jax.tree.map(lambda x: x[0], micro), rng)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zeros[0][0], zeros[0][1], zeros[1]))
      (loss, metrics, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum_steps), micro))
      loss, metrics, grads = jax.tree.map(lambda x: x / grad_accum_steps, (loss, metrics, grads))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    grad_norm = optax.global_norm(grads)
    # One on-device flag per step; the loop reads it only when a checkpoint is due.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(params)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, lr=schedule(step - stage_start), finite=finite)
    new_state = dict(state, step=step + 1, params=params, opt_state=opt_state)
    if "ema" in state:
      new_state["ema"] = _update_ema(state["ema"], params, task.trainable, ema_decay, step - stage_start)
    return new_state, metrics

  return train_step


def _update_ema(ema: nnx.State, params: nnx.State, trained: Any, decay: float, n: jax.Array) -> nnx.State:
  """`ema` with the entries of `params` (those `trained` selects) moved towards them: d * ema +
  (1 - d) * params, d = min(decay, (1 + n) / (10 + n)) at a stage's n-th step; the rest as it was."""
  d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
  moving, rest = nnx.split_state(ema, trained, ...)
  moving = jax.tree.map(lambda e, p: (d * e + (1 - d) * p).astype(e.dtype), moving, params)
  return nnx.merge_state(moving, rest)


def _all_finite(tree: Any) -> jax.Array:
  """Whether every float leaf of `tree` is free of NaN/inf (one fused reduction)."""
  flags = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.stack(flags).all() if flags else jnp.asarray(True)


def compile_train_step(config: ml_collections.ConfigDict, task: Task, stage: Stage, graphdef: nnx.GraphDef,
                       tx: optax.GradientTransformation, schedule: optax.Schedule, state: Any,
                       batch: dict[str, Any], mesh: jax.sharding.Mesh, rules: sharding.Rules,
                       compiler_options: dict[str, Any] | None = None) -> Any:
  """The train step of `stage`, jitted with the state's shardings, the batch split over the
  mesh's batch axes and the state donated, lowered for (state, batch) and compiled.

  `state` and `batch` may be arrays or ShapeDtypeStructs with shardings (train_compile
  compiles for a TPU topology without weights or data). Checks first that the batch splits
  over the data-parallel devices (and into config.grad_accum_steps microbatches).
  Trace it under `sharding.mesh_context(mesh, rules)` so activation hints apply.
  """
  accum = int(config.get("grad_accum_steps", 1))
  sharding.check_global_batch(next(iter(jax.tree.leaves(batch))).shape[0], mesh, rules, accum)
  state_shardings = jax.tree.map(lambda x: x.sharding, state)
  step_fn = jax.jit(
      make_train_step(task, graphdef, tx, schedule, accum, int(config.seed), stage.start, stage.ema_decay),
      in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules)),
      out_shardings=(state_shardings, None),
      donate_argnums=(0,))
  return step_fn.lower(state, batch).compile(compiler_options)


# Compiler options of step_flops' variants on TPU: without windowed einsums the partitioner does not
# wrap FSDP all-gathers / reduce-scatters and their matmuls in loops, whose bodies XLA's cost
# analysis would count once. The FLOPs are the same; only the overlap of communication differs.
TPU_FLOP_COUNT_OPTIONS = {"xla_tpu_enable_windowed_einsum_for_all_gather": False,
                          "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False}


def compiled_flops(compiled: Any) -> float:
  """FLOPs of one call of a compiled step per device, as XLA counts them (0 if unknown)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend reports costs)
    return 0.0
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def compiled_loops(compiled: Any) -> int:
  """While loops in a compiled program (XLA's cost analysis counts each body once; 0 if unknown)."""
  try:
    text = compiled.as_text()
  except Exception:  # pylint: disable=broad-except  (not every backend prints its program)
    return 0
  return len(re.findall(r"\bwhile\(", text or ""))


def abstract_batch(task: Task, global_batch: int, mesh: jax.sharding.Mesh, rules: sharding.Rules
                   ) -> dict[str, jax.ShapeDtypeStruct]:
  """The task's batch of `global_batch` examples as ShapeDtypeStructs split over the batch axes."""
  s = sharding.batch_sharding(mesh, rules)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s) for k, v in task.abstract_batch(global_batch).items()}


def layer_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
  """The config dict that sets scan_layers (and may set n_layers): model.llama or model."""
  model = config.get("model", ml_collections.ConfigDict())
  for cfg in (model.get("llama", None), model):
    if isinstance(cfg, ml_collections.ConfigDict) and "scan_layers" in cfg:
      return cfg
  return None


def n_layers(task: Task) -> int:
  """The task model's depth (its Llama's for LLaMo; 1 for models without layers)."""
  cfg = getattr(task, "model_config", None)
  return getattr(getattr(cfg, "llama", cfg), "n_layers", 1)


def xla_counts_all_flops(config: ml_collections.ConfigDict, n_layers: int) -> bool:
  """Whether XLA's cost analysis of the step counts every FLOP (no scanned loop repeats a body)."""
  layers = layer_config(config)
  scanned = layers is not None and layers.get("scan_layers", False) and n_layers > 1
  return not scanned and int(config.get("grad_accum_steps", 1)) == 1


def step_flops(config: ml_collections.ConfigDict, make_task: runs.TaskFactory, stage: Stage,
               mesh: jax.sharding.Mesh, rules: sharding.Rules, global_batch: int, n_layers: int
               ) -> tuple[float, int]:
  """(FLOPs of one train step of `stage` per device, while loops left in the compiles counted)
  (module docstring): small unscanned compiles, no weights or data. Loops > 0: the FLOPs are a
  lower bound. Trace under `sharding.mesh_context(mesh, rules)`."""
  accum = int(config.get("grad_accum_steps", 1))
  micro = global_batch // accum
  loops = []
  options = TPU_FLOP_COUNT_OPTIONS if mesh.devices.flat[0].platform == "tpu" else None

  def flops_of(layers: int | None) -> float:
    variant = config.copy_and_resolve_references()
    with variant.unlocked():
      variant.grad_accum_steps = 1
      if layers is not None:
        layer_config(variant).n_layers = layers
        layer_config(variant).scan_layers = False
    task = make_task(variant, epath.Path(tempfile.gettempdir()) / "llamo_jax_step_flops", mesh)  # never written
    task.prepare_shapes()
    graphdef, state, tx, schedule = abstract_stage_state(variant, task, stage, mesh, rules)
    compiled = compile_train_step(variant, task, stage, graphdef, tx, schedule, state,
                                  abstract_batch(task, micro, mesh, rules), mesh, rules, options)
    loops.append(compiled_loops(compiled))
    return compiled_flops(compiled)

  if layer_config(config) is None:
    flops = flops_of(None) * accum
  else:
    f1, f2 = flops_of(1), flops_of(2)
    flops = (f1 + (n_layers - 1) * (f2 - f1)) * accum
  if max(loops):
    logging.warning("the FLOP count of %s is a lower bound: XLA's cost analysis counted the bodies of "
                    "%d while loops once (loops the partitioner added, e.g. collective matmuls)",
                    stage.name, max(loops))
  return flops, max(loops)
