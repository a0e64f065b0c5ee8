"""Training tasks: each pairs a model with its loss, data and evaluation."""
from __future__ import annotations

import importlib

import jax
import ml_collections
from etils import epath

from llamo_jax.tasks.base import Task

# name -> "module:Class", imported lazily so a task's dependencies load only when used.
TASKS = {
    "lm": "llamo_jax.tasks.lm:LanguageModelTask",
    "motion_vae": "llamo_jax.tasks.motion_vae:MotionVAETask",
    "llamo": "llamo_jax.tasks.llamo:LLaMoTask",
}


def get_task(config: ml_collections.ConfigDict, workdir: epath.Path, mesh: jax.sharding.Mesh) -> Task:
  """The task named by `config.task`."""
  name = config.get("task", None)
  if name not in TASKS:
    raise ValueError(f"config.task={name!r} is not a known task; choose one of {sorted(TASKS)}.")
  module_name, cls_name = TASKS[name].split(":")
  return getattr(importlib.import_module(module_name), cls_name)(config, workdir, mesh)
