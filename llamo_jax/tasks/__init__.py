"""Training tasks (each pairs a model with its loss, data and evaluation), and running a config's task.

`train_and_evaluate(config, workdir)` and `restore_for_eval(config, workdir)` look the
task up by `config.task` and hand it to the generic machinery in `llamo_jax.training`.
"""
from __future__ import annotations

import jax
import ml_collections
from etils import epath
from flax import nnx

from llamo_jax.tasks.evaluator import EvaluatorTask
from llamo_jax.tasks.llamo import LLaMoTask
from llamo_jax.tasks.lm import LanguageModelTask
from llamo_jax.tasks.motion_vae import MotionVAETask
from llamo_jax.training import runs
from llamo_jax.training import trainer
from llamo_jax.training.task import Task

TASKS: dict[str, type[Task]] = {"lm": LanguageModelTask, "motion_vae": MotionVAETask, "llamo": LLaMoTask,
                             "evaluator": EvaluatorTask}


def get_task(config: ml_collections.ConfigDict, workdir: epath.Path, mesh: jax.sharding.Mesh) -> Task:
  """The task named by `config.task`."""
  name = config.get("task", None)
  if name not in TASKS:
    raise ValueError(f"config.task={name!r} is not a known task; choose one of {sorted(TASKS)}.")
  return TASKS[name](config, workdir, mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | epath.Path) -> dict[str, float]:
  """Trains `config.task` (or a pipeline of runs) in `workdir`, resuming from its latest checkpoint."""
  return trainer.train_and_evaluate(config, workdir, get_task)


def restore_for_eval(config: ml_collections.ConfigDict, workdir: str | epath.Path, step: int | None = None,
                     weights: str = "ema") -> tuple[Task, nnx.Module, int]:
  """(prepared task, model with the checkpoint's weights, step) of a `config.task` run (`runs.restore`'s
  weights: "ema" or "trained")."""
  return runs.restore(config, workdir, get_task, step, weights)
