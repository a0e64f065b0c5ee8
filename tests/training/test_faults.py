"""Fault injection: bad trainer keys, damaged workdir files, NaN, corrupt checkpoints, a full disk.

Each test reproduces one failure a user hit (issue 17) and checks the run either
recovers (older readable checkpoint) or stops with one sentence naming the input
and the fix, without losing what is already on disk.
"""
import errno
import pathlib

import jax
import numpy as np
import pytest

from helpers import scalars
from llamo_jax import tasks
from llamo_jax.core.errors import InputError
from llamo_jax.training import checkpoints
from llamo_jax.training import runs
from test_trainer import tiny_lm_config


def _steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


# ----------------------------------------------------------------------------- config and workdir
@pytest.mark.parametrize("key", ["checkpoint_every", "log_every", "total_steps"])
def test_trainer_keys_out_of_range_are_refused_before_anything(caption_corpus_dir, tmp_path, key):
  with pytest.raises(runs.InvalidConfigError, match=rf"config\.{key}=0 is out of range: it must be an integer >= 1"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, **{key: 0}), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_damaged_config_json_is_one_error(caption_corpus_dir, tmp_path):
  (tmp_path / "config.json").write_text('{"task": "lm", "mod')  # truncated by a full disk or a kill
  with pytest.raises(runs.InvalidConfigError, match=r"config\.json is damaged \(not valid JSON"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir), tmp_path)
  with pytest.raises(runs.InvalidConfigError, match="delete it and rerun"):
    runs.load_run_config(tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_unwritable_workdir_is_one_error(caption_corpus_dir, tmp_path):
  (tmp_path / "a_file").write_text("")
  with pytest.raises(runs.WorkdirError, match=r"--workdir=.*a_file/run cannot be written"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir), tmp_path / "a_file" / "run")


# ----------------------------------------------------------------------------- NaN
def test_non_finite_state_is_never_checkpointed(caption_corpus_dir, tmp_path):
  # lr=1e30 blows the weights up within a few steps; metrics are logged only at step 25, so
  # the per-step device flag (read when a save is due) is what stops the run.
  config = tiny_lm_config(caption_corpus_dir, total_steps=12, log_every=25, checkpoint_every=2,
                          max_checkpoints=1, **{"optimizer.lr": 1e30, "optimizer.warmup_steps": 0})
  with pytest.raises(checkpoints.NonFiniteError, match=r"nothing non-finite was saved: the last checkpoint, "
                     r"step (\d+), holds finite weights") as info:
    tasks.train_and_evaluate(config, tmp_path)
  assert isinstance(info.value, InputError)
  last = int(info.value.args[0].split("the last checkpoint, step ")[1].split(",")[0])
  assert _steps(tmp_path) == [last]
  ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", async_save=False)
  state = ckpt._mgr.restore(last, args=checkpoints.ocp.args.Composite(
      state=checkpoints.ocp.args.StandardRestore()))["state"]
  ckpt.close()
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"])), "a saved state holds NaN/inf"


# ----------------------------------------------------------------------------- corrupt checkpoints
def _truncate_largest_array_file(step_dir: pathlib.Path) -> None:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  largest = max(files, key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 3])


def _empty_data_iter(step_dir: pathlib.Path) -> None:
  for p in (step_dir / "data_iter").glob("*.json"):
    p.write_text("")


def _corrupt_metadata(step_dir: pathlib.Path) -> None:
  (step_dir / "state" / "_METADATA").write_text("{not json")


@pytest.mark.parametrize("damage", [
    _truncate_largest_array_file,
    pytest.param(_empty_data_iter, marks=pytest.mark.slow),
    pytest.param(_corrupt_metadata, marks=pytest.mark.slow),
])
def test_corrupt_latest_checkpoint_resumes_from_the_newest_readable(caption_corpus_dir, tmp_path, damage):
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=4), tmp_path)
  assert _steps(tmp_path) == [2, 4]
  first = scalars(tmp_path, "train/loss")
  damage(tmp_path / "checkpoints" / "4")
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=6), tmp_path)
  assert (tmp_path / "unreadable_checkpoints" / "4").is_dir(), "the corrupt checkpoint is kept for inspection"
  assert _steps(tmp_path) == [4, 6]
  resumed = scalars(tmp_path, "train/loss")  # steps 3, 4 were trained again from step 2
  for step in (3, 4):
    np.testing.assert_allclose(resumed[step], first[step], rtol=1e-6, err_msg=f"step {step}")


@pytest.mark.slow
def test_no_restorable_checkpoint_names_each_step(caption_corpus_dir, tmp_path):
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=2), tmp_path)
  steps = _steps(tmp_path)
  for step in steps:
    _truncate_largest_array_file(tmp_path / "checkpoints" / str(step))
  with pytest.raises(checkpoints.IncompatibleCheckpointError, match=r"No checkpoint under .* could be restored.*"
                     r"step 2: .*If the config and code are unchanged, the checkpoints are corrupt"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=4), tmp_path)
  assert _steps(tmp_path) == steps  # nothing moved or deleted


# ----------------------------------------------------------------------------- disk full
def test_disk_full_names_the_folder_and_the_intact_checkpoint(tmp_path, monkeypatch):
  ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", save_interval_steps=1, async_save=False)
  state = {"w": np.arange(4.0, dtype=np.float32)}
  assert ckpt.save(1, state, None, {"step": 1})
  ckpt.wait()

  def full(*args, **kwargs):  # what orbax/tensorstore raise when a write hits ENOSPC
    raise ValueError("RESOURCE_EXHAUSTED: Error writing \"w\": Failed writing: No space left on device "
                     "[os_error_code='28']")
  monkeypatch.setattr(ckpt._mgr, "save", full)
  with pytest.raises(checkpoints.DiskFullError, match=r"No space left on the device holding .*checkpoints: a "
                     r"checkpoint write failed; the last complete checkpoint, step 1, is intact") as e:
    ckpt.save(2, state, None, {"step": 2})
  assert e.value.errno == errno.ENOSPC and isinstance(e.value, InputError)
  monkeypatch.undo()
  ckpt.close()
  assert _steps(tmp_path) == [1]


def test_finite_flags_name_the_first_bad_step_across_folds(monkeypatch):
  monkeypatch.setattr(checkpoints.FiniteFlags, "FOLD", 3)
  flags = checkpoints.FiniteFlags()
  for step in range(1, 11):
    flags.add(step, jax.numpy.asarray(step not in (5, 8)))
  with pytest.raises(checkpoints.NonFiniteError, match="at step 5; .* the last checkpoint, step 4, holds finite"):
    flags.check_before_save(4)
  flags.check_before_save(4)  # a check starts over
