"""Causal LM training of the Llama backbone (smoke run, and the demo's stage 0).

  python -m llamo_jax.train --config=configs/lm.py:tiny --workdir=/tmp/lm_tiny
  python -m llamo_jax.train --config=configs/lm.py:smollm2_135m,init_from=/tmp/smollm2 --workdir=...

`arg` is a model preset name (tiny, smollm2_135m, llama3_2_1b, llama3_2_3b,
llama3_1_8b), optionally followed by `,key=value` pairs for init_from/corpus_dir.
"""
import ml_collections

from llamo_jax.core.config_files import parse_arg
from llamo_jax.models import presets


def get_config(arg=None):
  # The default preset (tiny) first.
  names = ("tiny", *sorted(set(presets.PRESETS) - {"tiny"}))
  preset, extra = parse_arg(arg, "lm", names, ("init_from", "corpus_dir"))
  config = ml_collections.ConfigDict()
  config.task = "lm"
  config.seed = 0
  config.model = ml_collections.ConfigDict(presets.get_preset(preset).to_dict())
  config.init_from = extra.get("init_from", "")   # pretrained dir from `python -m llamo_jax.import_llm`
  config.tokenizer = ""                            # a tokenizer path; default: the pretrained dir's
  config.tokenizer_vocab_size = 512                # SentencePiece trained on the captions when no tokenizer

  config.data = ml_collections.ConfigDict()
  # Captions of this HumanML3D-layout corpus; the bundled synthetic one is built on first use.
  config.data.corpus = ml_collections.ConfigDict(dict(
      dir=extra.get("corpus_dir", "data/synthetic_20fps"), num_motions=1000, seed=0, fps=20, holdout="",
      processes=2))
  config.data.seq_len = 128
  config.data.batch_size = 16                      # global

  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  config.logical_axis_rules = ml_collections.FieldReference(None, field_type=list)

  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=3e-3, warmup_steps=50, end_lr_frac=0.1, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.01, grad_clip=1.0))
  config.total_steps = 300
  config.grad_accum_steps = 1
  config.ema_decay = 0.0  # the weight EMA evaluations read (llamo_jax/training/state.py); 0: none
  config.log_every = 25
  config.eval_every = 100
  config.eval_batches = 4
  config.checkpoint_every = 100
  config.max_checkpoints = 2
  config.async_checkpoints = True
  config.stop_after_steps = ml_collections.FieldReference(None, field_type=int)

  if preset == "tiny":
    config.model.vocab_size = 0                    # sized from the trained tokenizer
  else:
    # Real-model presets: fine-tune from an imported checkpoint at a gentle lr.
    config.optimizer.lr = 2e-5
    config.optimizer.warmup_steps = 10
    config.data.seq_len = 256
    config.data.batch_size = 8
    config.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
  return config


def sweep(add):
  """Learning-rate sweep of the tiny LM (for a launcher that calls `sweep(add)`)."""
  for lr in (1e-3, 3e-3, 1e-2):
    add(**{"config.optimizer.lr": lr})
