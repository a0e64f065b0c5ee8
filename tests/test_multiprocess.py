"""Two local processes x 4 CPU devices (one gloo mesh) train exactly like one process x 8; a lost
process stops the other within the heartbeat timeout."""
import os
import pathlib
import random
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import scalars

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_two_processes_match_one(tmp_path, caption_corpus_dir):
  flags = ["--config.total_steps=3", "--config.log_every=1", "--config.eval_every=0",
           "--config.tokenizer_vocab_size=300", "--config.data.seq_len=32", "--config.data.batch_size=8",
           "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
           "--config.async_checkpoints=False"]
  config = f"configs/lm.py:tiny,corpus_dir={caption_corpus_dir}"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PATH"] = f"{pathlib.Path(os.sys.executable).parent}:{env['PATH']}"
  multi = subprocess.run(["bash", "launch/local_multiprocess.sh", "2", "4", config, str(tmp_path / "multi"), *flags],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
  assert multi.returncode == 0, multi.stderr[-3000:]
  single = subprocess.run(["bash", "launch/local_multiprocess.sh", "1", "8", config, str(tmp_path / "single"), *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
  assert single.returncode == 0, single.stderr[-3000:]
  multi_losses, single_losses = scalars(tmp_path / "multi", "train/loss"), scalars(tmp_path / "single", "train/loss")
  assert sorted(single_losses) == [1, 2, 3]
  for step in (1, 2, 3):
    np.testing.assert_allclose(multi_losses[step], single_losses[step], rtol=1e-5, err_msg=f"step {step}")


@pytest.mark.slow
def test_a_lost_process_stops_the_survivor_within_the_heartbeat_timeout(tmp_path, caption_corpus_dir):
  """kill -9 process 1 of 2 mid-training: process 0 stops within --heartbeat_timeout_s (+ polling slack),
  and its log names the lost process."""
  port = 20000 + random.randrange(20000)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  procs, logs = [], []
  for i in range(2):
    logs.append(tmp_path / f"process_{i}.log")
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "llamo_jax.train", f"--config=configs/lm.py:tiny,corpus_dir={caption_corpus_dir}",
         f"--workdir={tmp_path / 'run'}", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
         f"--process_id={i}", "--num_cpu_devices=2", "--heartbeat_timeout_s=10", "--config.total_steps=100000",
         "--config.log_every=1", "--config.eval_every=0", "--config.checkpoint_every=1000",
         "--config.tokenizer_vocab_size=300", "--config.data.seq_len=32", "--config.data.batch_size=8",
         "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=1"],
        cwd=REPO, env=env, stdout=logs[i].open("w"), stderr=subprocess.STDOUT))
  try:
    deadline = time.time() + 600
    while time.time() < deadline and len(re.findall(r"\] \[\d+\] train/", logs[0].read_text())) < 2:
      assert procs[0].poll() is None, logs[0].read_text()[-3000:]
      time.sleep(0.5)
    procs[1].kill()
    start = time.time()
    procs[0].wait(timeout=120)
    waited = time.time() - start
  finally:
    for p in procs:
      p.kill()
  log = logs[0].read_text()
  assert procs[0].returncode != 0
  assert waited < 25, f"the survivor waited {waited:.0f} s"
  assert re.search(r"tasks are unhealthy \(stopped sending heartbeats\):\s*1\b", log), log[-3000:]
