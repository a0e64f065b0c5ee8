"""SIGTERM during training saves a checkpoint at the next step boundary and exits cleanly."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _long_run(workdir, corpus):
  """(env, command) of an lm:tiny run long enough to be stopped by a signal."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  cmd = [sys.executable, "-m", "llamo_jax.train", f"--config=configs/lm.py:tiny,corpus_dir={corpus}",
         f"--workdir={workdir}", "--config.total_steps=100000", "--config.log_every=1",
         "--config.eval_every=0", "--config.checkpoint_every=100000", "--config.tokenizer_vocab_size=300",
         "--config.data.seq_len=32", "--config.data.batch_size=8"]
  return env, cmd


def test_sigterm_saves_and_stops(tmp_path, caption_corpus_dir):
  env, cmd = _long_run(tmp_path, caption_corpus_dir)
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines, deadline = [], time.time() + 240
  for line in proc.stdout:  # wait until training steps are being logged
    lines.append(line)
    if "train/loss" in line or time.time() > deadline:
      break
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  log = "".join(lines) + out
  assert proc.returncode == 0, log[-3000:]
  match = re.search(r"stopping at step (\d+)", log)
  assert match, log[-3000:]
  steps = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert max(steps) == int(match.group(1)) < 100000, (steps, match.group(0))


@pytest.mark.slow  # a full start-up in a subprocess; the default run has test_sigterm_saves_and_stops
def test_sigterm_during_start_up_stops_cleanly_at_the_first_step(tmp_path, caption_corpus_dir):
  env, cmd = _long_run(tmp_path, caption_corpus_dir)
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:  # jax is up; the tokenizer, model and step compilation are still to come
    lines.append(line)
    if "local devices" in line:
      break
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=240)
  log = "".join(lines) + out
  assert proc.returncode == 0, log[-3000:]
  assert "stopping at step 1 " in log, log[-3000:]
  assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()] == ["1"]
