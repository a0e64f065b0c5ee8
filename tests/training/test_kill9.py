"""Randomized kill -9: a run killed at random points (mid-step, mid-checkpoint commit, at an
evaluation) and restarted each time logs exactly the losses of the uninterrupted run.

Each restart is a fresh process (~10 s of start-up and compilation on a 2-core CPU), so the
default run kills once (mid-checkpoint commit) and `pytest -m slow tests/training/test_kill9.py`
kills at 3 and at 20 points. tests/training/test_trainer.py (stop and resume in process) and
test_faults.py (resume from an older checkpoint) cover resume exactness too.
"""
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from helpers import _accumulators
from tensorboard.util import tensor_util

REPO = pathlib.Path(__file__).resolve().parents[2]
TOTAL_STEPS = 14
# What a kill waits for in the log, then a random delay of up to the given seconds.
MARKERS = {
    "step": (re.compile(r"\] \[(\d+)\] train/"), 0.4),            # mid-step (the next step is running)
    "checkpoint": (re.compile(r"Saving checkpoint at step (\d+)"), 0.15),  # mid-commit of an async save
    "evaluation": (re.compile(r"\] \[(\d+)\] train/"), 0.05),     # at an eval step (eval follows the log)
}


def _command(corpus: pathlib.Path, workdir: pathlib.Path) -> list[str]:
  return [sys.executable, "-m", "llamo_jax.train", f"--config=configs/lm.py:tiny,corpus_dir={corpus}",
          f"--workdir={workdir}", f"--config.total_steps={TOTAL_STEPS}", "--config.log_every=1",
          "--config.eval_every=4", "--config.eval_batches=1", "--config.checkpoint_every=3",
          "--config.tokenizer_vocab_size=300", "--config.data.seq_len=32", "--config.data.batch_size=8"]


def _env(cache: pathlib.Path) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


def _run_and_kill(cmd, env, kind: str, at_step: int, delay: float) -> bool:
  """Runs `cmd`; SIGKILLs it `delay` s after the `kind` marker of a step >= at_step. Returns whether killed."""
  pattern, _ = MARKERS[kind]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  log = []
  killer = None
  for line in proc.stdout:
    log.append(line)
    match = pattern.search(line)
    if killer is None and match and int(match.group(1)) >= at_step and (
        kind != "evaluation" or int(match.group(1)) % 4 == 0):
      killer = threading.Timer(delay, proc.send_signal, (signal.SIGKILL,))
      killer.start()
  proc.wait(timeout=300)
  if killer is not None:
    killer.join()
  if proc.returncode not in (0, -signal.SIGKILL):
    raise AssertionError("".join(log)[-3000:])
  return proc.returncode == -signal.SIGKILL


def _all_losses(workdir: pathlib.Path) -> dict[int, list[float]]:
  """Every logged train/loss per step, over all event files (killed runs' included)."""
  out: dict[int, list[float]] = {}
  for acc in _accumulators(workdir):
    if "train/loss" in acc.Tags()["tensors"]:
      for ev in acc.Tensors("train/loss"):
        out.setdefault(ev.step, []).append(float(np.asarray(tensor_util.make_ndarray(ev.tensor_proto))))
  return out


@pytest.mark.parametrize("kills", [1, pytest.param(3, marks=pytest.mark.slow),
                                   pytest.param(20, marks=pytest.mark.slow)])
def test_random_kill9_points_resume_to_identical_losses(caption_corpus_dir, tmp_path, kills):
  env = _env(tmp_path / "jax_cache")
  reference = tmp_path / "reference"
  assert not _run_and_kill(_command(caption_corpus_dir, reference), env, "step", TOTAL_STEPS + 1, 0.0)
  expected = {step: values[-1] for step, values in _all_losses(reference).items()}
  assert sorted(expected) == list(range(1, TOTAL_STEPS + 1))

  rng = np.random.default_rng(int(os.environ.get("KILL9_SEED", "17")))
  workdir, killed, t0 = tmp_path / "killed", [], time.time()
  for i in range(kills):
    kind = ("checkpoint", "step", "evaluation")[i % 3]
    # Kill points before the last checkpoint (step 12), so each run is still going when its kill fires.
    at_step, delay = int(rng.integers(1, TOTAL_STEPS - 2)), float(rng.uniform(0, MARKERS[kind][1]))
    if _run_and_kill(_command(caption_corpus_dir, workdir), env, kind, at_step, delay):
      killed.append((kind, at_step, round(delay, 3)))
  assert not _run_and_kill(_command(caption_corpus_dir, workdir), env, "step", TOTAL_STEPS + 1, 0.0)
  assert killed, "no run was killed: the kill points are never reached"
  print(f"{len(killed)} of {kills} runs killed (kind, at step, delay s): {killed}")

  logged = _all_losses(workdir)
  assert sorted(logged) == sorted(expected), (sorted(logged), killed)
  for step, values in logged.items():
    np.testing.assert_allclose(values, [expected[step]] * len(values), rtol=1e-6,
                               err_msg=f"step {step} after kills {killed} ({time.time() - t0:.0f} s)")
