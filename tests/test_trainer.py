"""End-to-end trainer tests: a few steps, checkpoint, kill, resume, identical losses."""
import pathlib

import numpy as np
import pytest

from helpers import load_config, override, scalars
from llamo_jax import trainer


def tiny_lm_config(corpus: pathlib.Path, **overrides):
  config = load_config("lm", f"tiny,corpus_dir={corpus}")
  config.tokenizer_vocab_size = 300
  config.data.seq_len = 32
  config.data.batch_size = 8
  config.mesh = {"data": 2, "fsdp": 2, "tensor": 2}
  config.total_steps = 6
  config.log_every = 1
  config.eval_every = 0
  config.checkpoint_every = 2
  config.optimizer.warmup_steps = 2
  return override(config, **overrides)


def test_kill_and_resume_gives_identical_losses(caption_corpus_dir, tmp_path):
  straight = tmp_path / "straight"
  trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir), straight)
  losses = scalars(straight, "train/loss")
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  assert losses[6] < losses[1], "six AdamW steps should reduce the LM loss"

  interrupted = tmp_path / "interrupted"
  trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir, stop_after_steps=3), interrupted)
  assert sorted(scalars(interrupted, "train/loss")) == [1, 2, 3]
  assert 3 in [int(p.name) for p in (interrupted / "checkpoints").iterdir() if p.name.isdigit()]
  trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir), interrupted)
  resumed = scalars(interrupted, "train/loss")
  for step in (4, 5, 6):
    np.testing.assert_allclose(resumed[step], losses[step], rtol=1e-6, err_msg=f"step {step}")


def test_resume_with_a_different_model_is_refused(caption_corpus_dir, tmp_path):
  trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=2), tmp_path)
  with pytest.raises(ValueError, match="different config"):
    trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir, **{"model.n_layers": 3}), tmp_path)


def test_nan_stops_the_run_with_the_step(caption_corpus_dir, tmp_path):
  with pytest.raises(trainer.NonFiniteError, match="step 1"):
    trainer.train_and_evaluate(tiny_lm_config(caption_corpus_dir, **{"optimizer.lr": float("nan")}), tmp_path)
