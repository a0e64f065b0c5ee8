"""Finished and running runs on disk: the workdir's config, and a run's model restored for evaluation.

Restoring needs only the task's class (a callable (config, workdir, mesh) -> Task), not
the trainer, so a task can restore the runs it builds on (LLaMo restores its LM and VAE).
"""
from __future__ import annotations

import json
from typing import Callable

import jax
import ml_collections
from etils import epath
from flax import nnx

from llamo_jax.core import paths
from llamo_jax.core import sharding
from llamo_jax.training import checkpoints
from llamo_jax.training.stages import stage_at
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.state import abstract_of
from llamo_jax.training.state import init_train_state
from llamo_jax.training.task import Task

# Config keys that may change between a run and its resumption; anything else
# that differs (model shapes, task, data) makes the checkpoint incompatible.
RESUMABLE_CHANGES = ("total_steps", "log_every", "eval_every", "eval_batches", "eval_renders", "checkpoint_every",
                     "max_checkpoints", "async_checkpoints", "stop_after_steps")

# (config, workdir, mesh) -> the Task: a task class, or a registry lookup.
TaskFactory = Callable[[ml_collections.ConfigDict, epath.Path, jax.sharding.Mesh], Task]


def load_run_config(workdir: str | epath.Path, task: str | None = None) -> ml_collections.ConfigDict:
  """The config a training workdir was run with (its config.json); with `task`, it must be a run of it."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir. Train it first "
                            "(python -m llamo_jax.train --config=... --workdir=...).")
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  if task is not None and config.get("task") != task:
    raise ValueError(f"{workdir} is a {config.get('task')!r} run, not a {task!r} run: point at a workdir "
                     f"trained with a config whose task is {task!r}.")
  return config


def check_config_against_workdir(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  """Writes `config.json` on the first run; on resume, refuses a config that changed."""
  path = workdir / "config.json"
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  if not path.exists():
    if jax.process_index() == 0:
      path.write_text(json.dumps(current, indent=2, sort_keys=True))
    return
  previous = json.loads(path.read_text())
  changed = sorted(k for k in set(previous) | set(current)
                   if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k))
  if changed:
    raise ValueError(
        f"{workdir} holds a run with a different config (keys {changed} differ from {path}). "
        "Use a new --workdir, or pass the same config to resume that run.")


def restore(config: ml_collections.ConfigDict, workdir: str | epath.Path, make_task: TaskFactory,
            step: int | None = None) -> tuple[Task, nnx.Module, int]:
  """(prepared task, model with the checkpoint's weights, step) of a training workdir (latest step by default)."""
  workdir = paths.absolute(workdir)
  ckpt = checkpoints.Checkpointer(workdir / "checkpoints", async_save=False)
  step = ckpt.latest_step if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint under {workdir / 'checkpoints'}: train first "
                            f"(python -m llamo_jax.train --config=... --workdir={workdir}).")
  check_config_against_workdir(config, workdir)
  mesh = sharding.make_mesh(config.mesh.to_dict())
  rules = sharding.rules_from_config(config.get("logical_axis_rules", None))
  task = make_task(config, workdir, mesh)
  task.prepare()
  stage = stage_at(stage_plan(config), step, ckpt.restore_meta(step).get("stage"))
  with sharding.mesh_context(mesh, rules):
    graphdef, state, _, _ = init_train_state(config, task, mesh, rules, stage)
    state, _ = ckpt.restore(step, abstract_of(state), None)
  ckpt.close()
  return task, nnx.merge(graphdef, state["params"], state["frozen"]), step


def resolve_workdir(config: ml_collections.ConfigDict, workdir: epath.Path) -> ml_collections.ConfigDict:
  """A copy of `config` with "{workdir}" in every string value replaced by `workdir`."""
  def resolve(value):
    if isinstance(value, str):
      return value.replace("{workdir}", str(workdir))
    if isinstance(value, dict):
      return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return type(value)(resolve(v) for v in value)
    return value
  return ml_collections.ConfigDict(resolve(config.to_dict()))
