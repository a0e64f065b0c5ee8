"""Two local processes x 4 CPU devices (one gloo mesh) train exactly like one process x 8."""
import os
import pathlib
import subprocess

import numpy as np

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
