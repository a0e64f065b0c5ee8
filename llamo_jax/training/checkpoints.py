"""Training checkpoints: an orbax CheckpointManager over (train state, data iterator, meta).

Layout under `WORKDIR/checkpoints/STEP/`:
  state/      the train state pytree (params, optimizer state, step), restored directly
              into the shardings the current mesh wants;
  data_iter/  the Grain iterator state (one file per process), so a resumed run sees
              exactly the batches the uninterrupted run would have seen;
  meta/       JSON: stage, config fingerprint, anything a task wants to carry.

Saves are asynchronous and keep the last `max_to_keep`. A SIGTERM (preemption)
is turned into a save at the next step boundary by the trainer (`PreemptionWatcher`).
"""
from __future__ import annotations

import signal
import threading
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


class IncompatibleCheckpointError(ValueError):
  """The checkpoint on disk does not fit the model/optimizer the config builds."""


def saved_steps(directory: str | epath.Path) -> list[int]:
  """The finalized checkpoint steps under `directory` (none if it does not exist), without
  creating anything there: for tools that look at a run from outside (sweeps)."""
  directory = epath.Path(directory)
  if not directory.exists():
    return []
  return sorted(ocp.utils.checkpoint_steps(directory))


class Checkpointer:
  """Save/restore of train state + data iterator + meta, asynchronously, keep-N."""

  def __init__(self, directory: str | epath.Path, *, max_to_keep: int = 3,
               save_interval_steps: int = 1000, async_save: bool = True):
    self.directory = epath.Path(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=True)
    self._mgr = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data_iter", "meta"))

  @property
  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._mgr.all_steps())

  def save(self, step: int, state: Any, data_iter: Any | None, meta: dict, *, force: bool = False) -> bool:
    """Starts an (async) save of `step`; returns whether a save was started."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    return self._mgr.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Any, data_iter: Any | None) -> tuple[Any, dict]:
    """Restores `step` into `abstract_state`'s shapes and shardings; `data_iter` in place."""
    items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self._mgr.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as e:
      raise IncompatibleCheckpointError(
          f"The checkpoint at {self.directory / str(step)} does not match the model and optimizer "
          f"this config builds ({type(e).__name__}: {str(e)[:500]}). Resume with the config that "
          f"wrote it (see {self.directory.parent / 'config.json'}) or start a new --workdir.") from e
    return restored["state"], dict(restored["meta"])

  def restore_meta(self, step: int) -> dict:
    return dict(self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

  def wait(self) -> None:
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.wait_until_finished()
    self._mgr.close()


class PreemptionWatcher:
  """Turns SIGTERM into a flag the train loop polls at step boundaries.

  On multi-host runs the flags of all hosts are gathered, so every host stops at
  (and saves) the same step.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    del signum, frame
    self._event.set()

  def should_stop(self) -> bool:
    """Whether any host got SIGTERM. Collective on multi-host runs: call it on every host."""
    flag = self._event.is_set()
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      flag = bool(multihost_utils.process_allgather(np.asarray(flag)).any())
    return flag

  def restore_handler(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
