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
from llamo_jax.core.errors import InputError
from llamo_jax.training import checkpoints
from llamo_jax.training.stages import stage_at
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.state import abstract_of
from llamo_jax.training.state import ema_model
from llamo_jax.training.state import init_train_state
from llamo_jax.training.task import Task

# Config keys that may change between a run and its resumption; anything else
# that differs (model shapes, task, data) makes the checkpoint incompatible. `sampling`
# only sets how the evaluations sample (e.g. a knob added later, such as flow_dtype).
RESUMABLE_CHANGES = ("total_steps", "log_every", "eval_every", "eval_batches", "eval_renders", "checkpoint_every",
                     "max_checkpoints", "async_checkpoints", "stop_after_steps", "t2m_eval", "sampling")

# Trainer keys added after runs were trained, with the value that behaves as their absence: a
# config.json without one (at any depth: a pipeline's parts) resumes under a config that holds it.
ADDED_KEYS = {"ema_decay": 0.0}

# (config, workdir, mesh) -> the Task: a task class, or a registry lookup.
TaskFactory = Callable[[ml_collections.ConfigDict, epath.Path, jax.sharding.Mesh], Task]

# The trainer's numeric keys: (smallest allowed value, what it means). None is allowed where noted.
TRAINER_KEYS = {"total_steps": (1, "steps to train"), "log_every": (1, "steps between logged metrics"),
                "checkpoint_every": (1, "steps between checkpoints"),
                "eval_every": (0, "steps between evaluations; 0 turns evaluation off"),
                "max_checkpoints": (1, "checkpoints kept"), "grad_accum_steps": (1, "microbatches per step"),
                "stop_after_steps": (1, "stop (and save) after this step; None runs to the end")}


class InvalidConfigError(InputError, ValueError):
  """A config value (or the workdir's config.json) a run cannot use; the message names it and the fix."""


class WorkdirError(InputError, PermissionError):
  """The workdir cannot be created or written."""


def check_trainer_keys(config: ml_collections.ConfigDict) -> None:
  """Refuses trainer keys out of range (e.g. checkpoint_every=0) before anything starts."""
  for key, (low, meaning) in TRAINER_KEYS.items():
    if key not in config or (key == "stop_after_steps" and config[key] is None):
      continue
    if key == "total_steps" and config.get("stage_order", None):
      continue  # a staged run's length is the sum of its stages' steps
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise InvalidConfigError(f"config.{key}={value!r} is out of range: it must be an integer >= {low} "
                               f"({meaning}); pass e.g. --config.{key}={max(low, 1)}.")


def make_workdir(workdir: epath.Path) -> None:
  """Creates `workdir`; one clear error if it (or its parent) cannot be written."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    if "://" not in str(workdir):  # local: writing needs more than existing (read-only mounts, modes)
      probe = workdir / f".write_probe_{jax.process_index()}"
      probe.write_text("")
      probe.unlink()
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir} cannot be written ({e.strerror or e}); choose a folder you "
                          "can write to.") from e


def _read_json(path: epath.Path) -> dict:
  """The JSON object in `path`; a damaged file (e.g. truncated by a full disk) is one clear error."""
  text = path.read_text()
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise InvalidConfigError(
        f"{path} is damaged (not valid JSON: {e.msg}, line {e.lineno} column {e.colno}); restore it from "
        "a backup, or delete it and rerun with the config that made the run to write it again.") from e
  if not isinstance(value, dict):
    raise InvalidConfigError(f"{path} holds a JSON {type(value).__name__}, not a config object; restore it "
                             "or delete it and rerun with the config that made the run.")
  return value


def load_run_config(workdir: str | epath.Path, task: str | None = None) -> ml_collections.ConfigDict:
  """The config a training workdir was run with (its config.json); with `task`, it must be a run of it."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir. Train it first "
                            "(python -m llamo_jax.train --config=... --workdir=...).")
  config = ml_collections.ConfigDict(_read_json(path))
  if task is not None and config.get("task") != task:
    raise ValueError(f"{workdir} is a {config.get('task')!r} run, not a {task!r} run: point at a workdir "
                     f"trained with a config whose task is {task!r}.")
  return config


def check_config_against_workdir(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  """Writes `config.json` on the first run; on resume, refuses a config that changed."""
  path = workdir / "config.json"
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  if not path.exists():
    if jax.process_index() == 0:  # written whole or not at all
      tmp = path.with_name(f".{path.name}.tmp")
      tmp.write_text(json.dumps(current, indent=2, sort_keys=True))
      tmp.rename(path)
    return
  previous, current = _without_added_defaults(_read_json(path)), _without_added_defaults(current)
  changed = sorted(k for k in set(previous) | set(current)
                   if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k))
  if changed:
    raise ValueError(
        f"{workdir} holds a run with a different config (keys {changed} differ from {path}). "
        "Use a new --workdir, or pass the same config to resume that run.")


WEIGHTS = ("ema", "trained")


def _without_added_defaults(value):
  """A config dict without the ADDED_KEYS that hold their default, at any depth."""
  if not isinstance(value, dict):
    return value
  return {k: _without_added_defaults(v) for k, v in value.items()
          if not (k in ADDED_KEYS and v == ADDED_KEYS[k])}


def restore(config: ml_collections.ConfigDict, workdir: str | epath.Path, make_task: TaskFactory,
            step: int | None = None, weights: str = "ema") -> tuple[Task, nnx.Module, int]:
  """(prepared task, model with the checkpoint's weights, step) of a training workdir (latest step by default).

  weights: "ema" (the weight EMA where the run keeps one, llamo_jax/training/state.py; else the
  trained weights) or "trained" (the weights the optimizer left, also where there is an EMA).
  """
  if weights not in WEIGHTS:
    raise ValueError(f"weights={weights!r}: choose {' or '.join(WEIGHTS)}.")
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
  if weights == "trained":
    state.pop("ema", None)
  return task, ema_model(graphdef, state), step


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
