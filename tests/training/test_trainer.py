"""End-to-end trainer tests: a few steps, checkpoint, kill, resume, identical losses."""
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from helpers import load_config, override, scalars
from llamo_jax import tasks
from llamo_jax.training import train_step
from llamo_jax.training import trainer


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
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir), straight)
  losses = scalars(straight, "train/loss")
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  assert losses[6] < losses[1], "six AdamW steps should reduce the LM loss"

  interrupted = tmp_path / "interrupted"
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, stop_after_steps=3), interrupted)
  assert sorted(scalars(interrupted, "train/loss")) == [1, 2, 3]
  assert 3 in [int(p.name) for p in (interrupted / "checkpoints").iterdir() if p.name.isdigit()]
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir), interrupted)
  resumed = scalars(interrupted, "train/loss")
  for step in (4, 5, 6):
    np.testing.assert_allclose(resumed[step], losses[step], rtol=1e-6, err_msg=f"step {step}")


def test_resume_with_a_different_model_is_refused(caption_corpus_dir, tmp_path):
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, total_steps=2), tmp_path)
  with pytest.raises(ValueError, match="different config"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, **{"model.n_layers": 3}), tmp_path)


def test_nan_stops_the_run_with_the_step(caption_corpus_dir, tmp_path):
  with pytest.raises(trainer.NonFiniteError, match="step 1"):
    tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, **{"optimizer.lr": float("nan")}), tmp_path)


class _LinearTask:
  """A least-squares task: the mean loss over equal microbatches equals the full-batch mean."""

  def loss(self, model, batch, rng):
    del rng
    err = model(batch["x"]) - batch["y"]
    return (err ** 2).mean(), {"abs_err": abs(err).mean()}


def test_gradient_accumulation_equals_the_full_batch():
  import jax
  import optax
  from flax import nnx

  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  batch = {"x": np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32),
           "y": np.random.default_rng(1).normal(size=(8, 1)).astype(np.float32)}
  tx = optax.sgd(0.1)
  results = []
  for accum in (1, 4):
    step = train_step.make_train_step(_LinearTask(), graphdef, tx, optax.constant_schedule(0.1), accum,
                                   jax.random.key(0))
    state = {"step": jax.numpy.zeros((), jax.numpy.int32), "params": params, "opt_state": tx.init(params),
             "frozen": rest}
    results.append(jax.jit(step)(state, batch))
  (s1, m1), (s4, m4) = results
  np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
  np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(s1["params"]), jax.tree.leaves(s4["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-6)



def _restored_params(config, workdir, weights):
  _, model, _ = tasks.restore_for_eval(config, workdir, weights=weights)
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_weight_ema_lags_the_weights_leaves_training_alone_and_survives_a_kill(caption_corpus_dir, tmp_path):
  plain_config = tiny_lm_config(caption_corpus_dir, eval_every=2)  # evaluations read the average
  config = tiny_lm_config(caption_corpus_dir, eval_every=2, ema_decay=0.5)
  plain, straight = tmp_path / "plain", tmp_path / "straight"
  tasks.train_and_evaluate(plain_config, plain)
  tasks.train_and_evaluate(config, straight)
  trained = _restored_params(config, straight, "trained")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), trained,
               _restored_params(plain_config, plain, "ema"))
  ema = _restored_params(config, straight, "ema")
  gaps = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), ema, trained)
  assert max(jax.tree.leaves(gaps)) > 1e-4, "the EMA of six steps at decay 0.5 must lag the trained weights"

  interrupted = tmp_path / "interrupted"
  tasks.train_and_evaluate(tiny_lm_config(caption_corpus_dir, eval_every=2, ema_decay=0.5, stop_after_steps=3),
                           interrupted)
  tasks.train_and_evaluate(config, interrupted)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ema,
               _restored_params(config, interrupted, "ema"))
