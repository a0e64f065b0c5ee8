"""The causal motion VAE (docs/design.md, Motion VAE; issue: train, evaluate, stream).

  python -m llamo_jax.train --config=configs/motion_vae.py:tiny --workdir=workdirs/vae_tiny
  python -m llamo_jax.evaluate --config=configs/motion_vae.py:tiny --workdir=workdirs/vae_tiny

arg: "PRESET[,key=value...]" with PRESET in tiny (CPU, minutes) | paper (width 512, batch 256)
and keys latent (16|32|64), quantizer (continuous|fsq), rep (hml263|mm272), corpus (core|wide: the
synthetic corpus's action set, llamo_jax/synthetic/program.py ACTION_SETS; wide adds crouch, kneel,
bend / pick up, stretch and arm gestures, in its own folders), layout (target|human: the rig's rest
layout, llamo_jax/synthetic/rig.py LAYOUTS; human puts the hips below the pelvis and the collars
above spine3, in its own folders), joint_vel (a weight for the loss's joint-velocity term,
models/vae_loss.py; the key exists only when given, so runs trained before it still resume). On
first use the synthetic corpus (data.corpus) and its records (data.path) are built.

:tiny trains in two stages (a length curriculum): 64-frame crops, then whole clips (up to 196
frames) for the last twelfth of total_steps, with a fresh AdamW at a lower peak lr. The short
crops are cheap and teach the pose; the whole clips teach the root velocities over the length
that evaluation integrates them (the held-out MPJPE is on whole clips, where the root error
grows with the frame index). `--config.total_steps=N` rescales both stages.
"""
import ml_collections

from llamo_jax.core.config_files import parse_arg
from llamo_jax.models import motion_vae
from llamo_jax.motion import representation as representation_lib


def get_config(arg=None):
  preset, extra = parse_arg(arg, "motion_vae", ("tiny", "paper"),
                             ("latent", "quantizer", "rep", "corpus", "layout", "joint_vel"))
  rep = extra.get("rep", "hml263")
  if rep not in representation_lib.NAMES:
    raise ValueError(f"rep={rep!r}: choose {' or '.join(representation_lib.NAMES)}.")
  fps = representation_lib.get_representation(rep).fps
  actions = extra.get("corpus", "core")
  if actions not in ("core", "wide"):
    raise ValueError(f"corpus={actions!r}: choose core or wide.")
  layout = extra.get("layout", "target")
  if layout not in ("target", "human"):
    raise ValueError(f"layout={layout!r}: choose target or human.")
  suffix = ("" if actions == "core" else f"_{actions}") + ("" if layout == "target" else f"_{layout}")

  config = ml_collections.ConfigDict()
  config.task = "motion_vae"
  config.seed = 0
  # The model preset's shapes (models/motion_vae.py:PRESETS); input_dim comes from the data.
  model = motion_vae.get_preset(preset, latent_dim=int(extra.get("latent", 32)),
                                quantizer=extra.get("quantizer", "continuous")).to_dict()
  del model["input_dim"]
  config.model = ml_collections.ConfigDict(model)
  config.loss = ml_collections.ConfigDict(dict(
      w_recon=1.0, w_root=7.0, w_kl=1e-4, w_joints=1.0, recon="smooth_l1"))
  if "joint_vel" in extra:
    config.loss.w_joint_vel = float(extra["joint_vel"])

  config.data = ml_collections.ConfigDict()
  config.data.corpus = ml_collections.ConfigDict(dict(
      dir=f"data/synthetic_{fps}fps{suffix}", num_motions=1000 if preset == "tiny" else 10000, seed=0,
      fps=fps, holdout="", processes=2))
  if actions != "core":  # core configs stay as they were, so runs trained before the key still resume
    config.data.corpus.actions = actions
  if layout != "target":
    config.data.corpus.layout = layout
  config.data.path = f"data/records/synthetic_{fps}fps{suffix}_{rep}"
  # Also train on the left/right mirror of every train clip (captions' left/right swapped);
  # records built either way are refused by the other, so give each its own data.path.
  config.data.mirror = False
  config.data.representation = rep
  config.data.max_len = 64 if preset == "tiny" else 196
  config.data.min_len = 40
  config.data.crop_multiple = motion_vae.FRAMES_PER_LATENT
  config.data.random_length = False
  config.data.batch_size = 32 if preset == "tiny" else 256
  config.data.worker_count = 0
  config.data.shuffle = True

  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  config.logical_axis_rules = ml_collections.FieldReference(None, field_type=list)
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=2e-3 if preset == "tiny" else 2e-4, warmup_steps=200, end_lr_frac=0.05,
      b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, grad_clip=1.0))
  config.total_steps = ml_collections.FieldReference(7600 if preset == "tiny" else 300_000)
  if preset == "tiny":
    clip_steps = (config.get_ref("total_steps") + 11) // 12  # ceil: at least one step
    config.stage_order = ("crops", "clips")
    config.stages = ml_collections.ConfigDict()
    config.stages.crops = ml_collections.ConfigDict(dict(steps=config.get_ref("total_steps") - clip_steps))
    config.stages.clips = ml_collections.ConfigDict(dict(
        steps=clip_steps, data=dict(max_len=196), optimizer=dict(lr=3e-4, warmup_steps=50)))
  config.grad_accum_steps = 1
  config.ema_decay = 0.0  # the weight EMA evaluations read (llamo_jax/training/state.py); 0: none
  config.log_every = 50
  config.eval_every = 1000 if preset == "tiny" else 10_000
  config.eval_batches = 4
  config.eval_renders = 2
  config.checkpoint_every = 1000 if preset == "tiny" else 10_000
  config.max_checkpoints = 2
  config.async_checkpoints = True
  config.stop_after_steps = ml_collections.FieldReference(None, field_type=int)
  return config


def sweep(add):
  """The paper's ablation: continuous z16/z32/z64 and the FSQ baseline."""
  for latent in (16, 32, 64):
    add(**{"config.model.latent_dim": latent})
  add(**{"config.model.quantizer": "fsq"})
