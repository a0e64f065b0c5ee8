"""Text-motion evaluators for the T2M / M2T metrics (docs/design.md, Evaluators).

  python -m llamo_jax.train --config=configs/evaluator.py:guo --workdir=/work/evaluators/guo_hml263
  python -m llamo_jax.train --config=configs/evaluator.py:tmr,rep=mm272 --workdir=W
  python -m llamo_jax.train --config=configs/evaluator.py:tmr,llm=workdirs/smollm2_135m --workdir=W

arg: "PRESET[,key=value...]" with PRESET in
  guo       the HumanML3D evaluator architecture exactly (motion BiGRU 1024, text BiGRU 512, 512-d)
  tmr       TMR-style transformers (width 256, 4 layers), symmetric InfoNCE at temperature 0.1
  guo_tiny  guo with small GRUs, for tests
  tmr_tiny  tmr with a small transformer, for tests
and keys
  rep       hml263 (default) | mm272
  llm       tmr only: an import_llm directory (python -m llamo_jax.import_llm --source=... --out=DIR);
            the text encoder then reads the frozen LLM's final hidden states (after its final norm)
            over the caption's tokens instead of learned word embeddings (config.text.llm; "" = words).
            The LLM is not trained nor saved with the evaluator: W/evaluator/meta.json records DIR.
Load the result with llamo_jax.tasks.evaluator.load_evaluator(W).
On first use the synthetic corpus (data.corpus) and its records (data.path) are built.
"""
import ml_collections

from llamo_jax.core.config_files import parse_arg
from llamo_jax.motion import representation as representation_lib

PRESETS = ("guo", "tmr", "guo_tiny", "tmr_tiny")


def get_config(arg=None):
  preset, extra = parse_arg(arg, "evaluator", PRESETS, ("rep", "llm"))
  rep = extra.get("rep", "hml263")
  if rep not in representation_lib.NAMES:
    raise ValueError(f"rep={rep!r}: choose {' or '.join(representation_lib.NAMES)}.")
  fps = representation_lib.get_representation(rep).fps
  kind = preset.split("_")[0]
  tiny = preset.endswith("_tiny")
  llm = extra.get("llm", "")
  if llm and kind != "tmr":
    raise ValueError(f"llm={llm!r} is for the tmr presets; the guo text encoder reads word vectors and POS.")

  config = ml_collections.ConfigDict()
  config.task = "evaluator"
  config.evaluator = kind
  config.seed = 0
  if kind == "guo":
    # models/evaluators.py:GuoConfig; input_dim and vocab_size are set from the data.
    config.model = ml_collections.ConfigDict(dict(
        word_dim=300, movement_hidden=512, movement_latent=512, text_hidden=512, motion_hidden=1024,
        embed_dim=512, dropout=0.2, train_word_table=True))
    if tiny:
      config.model.update(word_dim=32, movement_hidden=32, movement_latent=32, text_hidden=32,
                          motion_hidden=32, embed_dim=32)
    # The released evaluator's negative margin (train_tex_mot_match.py --negative_margin). It rolls the
    # batch once per step (num_negatives=1); every roll (31 negatives per text) learns in fewer steps.
    config.loss = ml_collections.ConfigDict(dict(margin=10.0, num_negatives=31))
  else:
    config.model = ml_collections.ConfigDict(dict(
        width=256, layers=4, heads=4, mlp_dim=1024, embed_dim=256, dropout=0.1, max_frames=196,
        max_words=32))
    if tiny:
      config.model.update(width=32, layers=1, heads=2, mlp_dim=64, embed_dim=32)
    # Captions whose content words overlap this much (Jaccard) are not each other's negatives.
    config.loss = ml_collections.ConfigDict(dict(temperature=0.1, duplicate_threshold=0.8))
  # max_words: words, or the LLM's tokens (BOS included) with llm set.
  config.text = ml_collections.ConfigDict(dict(max_words=32 if kind == "tmr" else 20, min_count=1, llm=llm))

  config.data = ml_collections.ConfigDict()
  config.data.corpus = ml_collections.ConfigDict(dict(
      dir=f"data/synthetic_{fps}fps", num_motions=1000, seed=0, fps=fps, holdout="", processes=2))
  config.data.path = f"data/records/synthetic_{fps}fps_{rep}"
  config.data.mirror = False
  config.data.representation = rep
  config.data.max_len = 196  # the evaluators' max_motion_length
  config.data.min_len = 40
  config.data.crop_multiple = 4  # unit_length
  config.data.random_length = False
  config.data.batch_size = 32
  config.data.worker_count = 0
  config.data.shuffle = True

  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  config.logical_axis_rules = ml_collections.FieldReference(None, field_type=list)
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-3 if kind == "guo" else 5e-4, warmup_steps=50, end_lr_frac=0.05,
      b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, grad_clip=1.0))
  config.total_steps = ml_collections.FieldReference(400 if kind == "guo" else 500)
  config.grad_accum_steps = 1
  config.ema_decay = 0.0  # the weight EMA evaluations read (llamo_jax/training/state.py); 0: none
  config.log_every = 50
  config.eval_every = 100
  config.eval_split = "val"
  config.eval_clips = ml_collections.FieldReference(None, field_type=int)
  config.checkpoint_every = 100
  config.max_checkpoints = 2
  config.async_checkpoints = True
  config.stop_after_steps = ml_collections.FieldReference(None, field_type=int)
  return config
