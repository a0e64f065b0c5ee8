"""Training checkpoints: an orbax CheckpointManager over (train state, data iterator, meta).

Layout under `WORKDIR/checkpoints/STEP/`:
  state/      the train state pytree (params, optimizer state, step), restored directly
              into the shardings the current mesh wants;
  data_iter/  the Grain iterator state (one file per process), so a resumed run sees
              exactly the batches the uninterrupted run would have seen;
  meta/       JSON: stage, config fingerprint, anything a task wants to carry.

Saves are asynchronous and keep the last `max_to_keep`. A SIGTERM (preemption)
is turned into a save at the next step boundary by the trainer (`preemption.py`).

The trainer never saves a state with a NaN/inf in it (`FiniteFlags`), so
every kept checkpoint is finite. A checkpoint that cannot be restored (truncated file,
corrupt metadata) is reported by step; the trainer then resumes from the newest readable
one and moves the unreadable ones to `WORKDIR/unreadable_checkpoints/` for inspection.
A save that fails for lack of disk space raises `DiskFullError` naming the folder.
"""
from __future__ import annotations

import contextlib
import errno
import shutil
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from llamo_jax.core.errors import InputError


class IncompatibleCheckpointError(InputError, ValueError):
  """The checkpoint on disk does not fit the model/optimizer the config builds."""


def _one_line(error: BaseException, limit: int) -> str:
  """The error's message on one line (library errors span many), cut to `limit` characters."""
  return " ".join(str(error).split())[:limit]


class RestoreFailedError(IncompatibleCheckpointError):
  """One step could not be restored: corrupt, or not this config's model (the caller tries older steps)."""

  def __init__(self, directory: epath.Path, step: int, cause: BaseException):
    self.directory, self.step, self.cause = directory, step, cause
    super().__init__(f"The checkpoint at {directory / str(step)} could not be restored "
                     f"({type(cause).__name__}: {_one_line(cause, 300)}).")


class DiskFullError(InputError, OSError):
  """A checkpoint save failed because its filesystem is full."""


def _is_disk_full(error: BaseException, directory: epath.Path) -> bool:
  """Whether `error` (or its cause chain) is ENOSPC, or the checkpoint filesystem has (almost) no space left."""
  seen = error
  while seen is not None:
    if getattr(seen, "errno", None) == errno.ENOSPC or "No space left" in str(seen):
      return True
    seen = seen.__cause__ or seen.__context__
  try:
    return shutil.disk_usage(directory).free < 1 << 20
  except OSError:
    return False


def unrestorable_error(directory: epath.Path, failures: list[RestoreFailedError]) -> IncompatibleCheckpointError:
  """The error when no checkpoint under `directory` restores: each step's reason, and the ways out."""
  reasons = "; ".join(f"step {f.step}: {type(f.cause).__name__}: {_one_line(f.cause, 200)}" for f in failures)
  return IncompatibleCheckpointError(
      f"No checkpoint under {directory} could be restored into the model and optimizer this config builds "
      f"({reasons}). If the config and code are unchanged, the checkpoints are corrupt: move "
      f"{directory} aside to start over. Otherwise resume with the config that wrote them (see "
      f"{directory.parent / 'config.json'}) or start a new --workdir.")


class NonFiniteError(InputError, FloatingPointError):
  """The loss, a metric or the parameters became NaN/inf; nothing non-finite was saved."""


def non_finite_error(what: str, step: int, last_saved: int | None) -> NonFiniteError:
  """The error for a run that went non-finite at `step`: what, which checkpoint is good, the fixes."""
  kept = (f"the last checkpoint, step {last_saved}, holds finite weights and a restart resumes from it"
          if last_saved is not None else "no checkpoint was written before it")
  return NonFiniteError(
      f"{what} at step {step}; nothing non-finite was saved: {kept}. Lower config.optimizer.lr, enable "
      "config.optimizer.grad_clip, or check the data for NaNs (a changed optimizer needs a new --workdir).")


class FiniteFlags:
  """The train step's per-step finiteness flags (device bools) since the last save.

  They stay on the device: every `FOLD` steps they are reduced there to the first bad
  step, and only `check_before_save` (called when a checkpoint is due) reads one number.
  """
  FOLD = 256
  _NONE = np.iinfo(np.int32).max

  def __init__(self):
    self._steps: list[int] = []
    self._flags: list[Any] = []
    self._first_bad = None  # device int32: the first non-finite step folded so far (_NONE if none)

  def add(self, step: int, flag: Any) -> None:
    self._steps.append(step)
    self._flags.append(flag)
    if len(self._flags) >= self.FOLD:
      self._fold()

  def _fold(self) -> None:
    if not self._flags:
      return
    bad = jnp.min(jnp.where(jnp.stack(self._flags), self._NONE, jnp.asarray(self._steps, jnp.int32)))
    self._first_bad = bad if self._first_bad is None else jnp.minimum(self._first_bad, bad)
    self._steps, self._flags = [], []

  def check_before_save(self, last_saved: int | None) -> None:
    """Raises NonFiniteError naming the first non-finite step since the last check; then starts over."""
    self._fold()
    first_bad = self._NONE if self._first_bad is None else int(jax.device_get(self._first_bad))
    self._first_bad = None
    if first_bad != self._NONE:
      raise non_finite_error("The train state became non-finite (NaN/inf in the loss or parameters)",
                             first_bad, last_saved)
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

  def should_save(self, step: int) -> bool:
    """Whether `save(step)` (without force) would write a checkpoint."""
    return self._mgr.should_save(step)

  def save(self, step: int, state: Any, data_iter: Any | None, meta: dict, *, force: bool = False) -> bool:
    """Starts an (async) save of `step`; returns whether a save was started."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    with self._disk_full_is_clear():
      return self._mgr.save(step, args=ocp.args.Composite(**items), force=force)

  @contextlib.contextmanager
  def _disk_full_is_clear(self):
    """A failure while the checkpoint filesystem is full becomes DiskFullError naming the folder."""
    try:
      yield
    except Exception as error:  # pylint: disable=broad-except  (re-raised unless the disk is full)
      if not _is_disk_full(error, self.directory):
        raise
      latest = self._finished()
      intact = (f"the last complete checkpoint, step {latest}, is intact" if latest is not None
                else "no earlier checkpoint exists")
      # Saves are async: the failed write may be an earlier step's, surfacing at this call.
      raise DiskFullError(errno.ENOSPC, f"No space left on the device holding {self.directory}: a checkpoint "
                          f"write failed; {intact}. Free space (or move the workdir) and rerun the same "
                          "command to resume.") from error

  def _finished(self) -> int | None:
    """The newest step with a finished (committed) checkpoint on disk."""
    steps = [int(p.name) for p in self.directory.iterdir()
             if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists()] if self.directory.exists() else []
    return max(steps, default=None)

  def restore(self, step: int, abstract_state: Any, data_iter: Any | None) -> tuple[Any, dict]:
    """Restores `step` into `abstract_state`'s shapes and shardings; `data_iter` in place."""
    items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self._mgr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except  (a corrupt file fails in any library's way)
      raise RestoreFailedError(self.directory, step, e) from e
    return restored["state"], dict(restored["meta"])

  def restore_meta(self, step: int) -> dict:
    try:
      return dict(self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as e:  # pylint: disable=broad-except  (a corrupt file fails in any library's way)
      raise RestoreFailedError(self.directory, step, e) from e

  def set_aside(self, steps: list[int]) -> epath.Path:
    """Moves the checkpoints of `steps` to WORKDIR/unreadable_checkpoints/ (kept for inspection); returns it."""
    target = self.directory.parent / "unreadable_checkpoints"
    if jax.process_index() == 0:
      target.mkdir(parents=True, exist_ok=True)
      for step in steps:
        dest, n = target / str(step), 1
        while dest.exists():
          dest, n = target / f"{step}.{n}", n + 1
        (self.directory / str(step)).rename(dest)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top  (multi-host only)
      multihost_utils.sync_global_devices("set_aside_checkpoints")
    self._mgr.reload()
    return target

  def wait(self) -> None:
    with self._disk_full_is_clear():
      self._mgr.wait_until_finished()

  def close(self) -> None:
    with self._disk_full_is_clear():
      self._mgr.wait_until_finished()
    self._mgr.close()
