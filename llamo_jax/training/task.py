"""What the generic trainer needs from a training objective (a "task")."""
from __future__ import annotations

import abc
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from llamo_jax.core import sharding
from llamo_jax.training.stages import Stage


class Task(abc.ABC):
  """A model, its loss, its data and its evaluation, for `training.trainer.train_and_evaluate`.

  The trainer owns everything generic: mesh, sharded init, optimizer, jitted step,
  checkpoints, logging. A task owns what differs between the LM, the motion VAE
  and the LLaMo stages.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: epath.Path, mesh: jax.sharding.Mesh):
    self.config = config
    self.workdir = workdir
    self.mesh = mesh
    self.stage: Stage | None = None

  def set_stage(self, stage: Stage) -> None:
    """Called before each stage of a run (name, steps, settings); a staged task reads its
    trainable filter and data mix from it."""
    self.stage = stage

  def prepare(self) -> None:
    """One-off work before the run (e.g. build a corpus or tokenizer if absent)."""

  def prepare_shapes(self) -> None:
    """Instead of `prepare`: sets up what `make_model` and `abstract_batch` need from the
    config alone, reading no weights and no data (an ahead-of-time compile,
    llamo_jax/train_compile.py)."""
    raise NotImplementedError(f"config.task={self.config.get('task')!r} cannot be compiled ahead of "
                              "time: its task has no prepare_shapes.")

  def abstract_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of a global device batch of `batch_size` rows for the current stage
    (what `global_batch` makes of a loader's batch; after `prepare_shapes`)."""
    raise NotImplementedError(f"config.task={self.config.get('task')!r} has no abstract_batch.")

  @abc.abstractmethod
  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model with fresh weights (called under jit, so it gets created sharded)."""

  def load_pretrained(self, model: nnx.Module) -> None:
    """Overwrites parts of a freshly created model with pretrained weights (in place)."""

  @property
  def trainable(self) -> Any:
    """An nnx filter for the parameters the optimizer updates; the rest stays frozen."""
    return nnx.Param

  @abc.abstractmethod
  def loss(self, model: nnx.Module, batch: dict[str, jax.Array], rng: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss and a dict of scalar metrics, for one (micro)batch."""

  @abc.abstractmethod
  def make_loader(self, split: str, *, seed: int, process_index: int, process_count: int
                  ) -> Iterator[dict[str, np.ndarray]]:
    """A checkpointable Grain iterator of per-host batches (numpy arrays; strings allowed)."""

  def device_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The part of a host batch that goes to the devices (numeric arrays only)."""
    return {k: v for k, v in batch.items()
            if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}

  def global_batch(self, batch: dict[str, Any]) -> dict[str, jax.Array]:
    """A per-host batch as global arrays split over the mesh's batch axes."""
    batch_sharding = sharding.batch_sharding(self.mesh, sharding.active_rules())
    return {k: jax.make_array_from_process_local_data(batch_sharding, v)
            for k, v in self.device_batch(batch).items()}

  def units_per_batch(self, batch: dict[str, np.ndarray]) -> tuple[str, float]:
    """What the progress line counts per step, e.g. ("tokens", 4096)."""
    return "examples", float(next(iter(batch.values())).shape[0])

  def evaluate(self, model: nnx.Module, step: int, writer: Any) -> dict[str, float]:
    """Periodic evaluation; returns scalars (the trainer writes them)."""
    del model, step, writer
    return {}
