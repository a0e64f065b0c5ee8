"""LLaMo's staged pretraining recipe (docs/design.md, Staged recipe) on a pretrained LLM and a trained VAE.

  python -m llamo_jax.train --config=configs/llamo.py:PRESET,pretrained=DIR,vae_workdir=DIR --workdir=DIR

PRESET: demo (tiny, CPU minutes; used by configs/demo.py) | smollm2 (SmolLM2-135M-Instruct) |
1b | 3b | 8b (Llama 3.2 1B / 3B, Llama 3.1 8B: the paper's hyperparameters).
Keys: pretrained (dir from `python -m llamo_jax.import_llm`), lm_workdir (an LM run exported
to `pretrained` on first use), vae_workdir (a motion VAE run; its latents are encoded on first
use), mesh (cpu | gpu8 | tpu: mesh and sharding preset; default per PRESET), mirror (1: add
every train clip's left/right mirror to the latents, config.data.mirror).
Stages: align (adapter + flow head, T2M:M2T 1:1) -> joint (motion expert and heads,
per-module lr, T2M:M2T 4:1) -> anneal (heads only, T2M only, static clips dropped).
"""
import ml_collections

from llamo_jax.core.config_files import parse_arg

_LLAMA_PRESETS = {"demo": "tiny", "smollm2": "smollm2_135m", "1b": "llama3_2_1b", "3b": "llama3_2_3b",
                  "8b": "llama3_1_8b"}

# Fixed sampling prompts and what each motion must do, checked from its joints
# (llamo_jax/eval/action_checks.py; synthetic-corpus vocabulary).
PROMPTS = ("a person walks forward.", "a person jumps up and down.", "a person waves the right hand.",
           "a person turns to the left.", "a person squats down.")
EXPECT = ("walk direction=forward distance=0.5", "jump count=1", "wave side=right",
          "turn turn_side=left angle=45", "squat count=1")


def _mesh(name):
  """Mesh shape + logical rules presets (axes data/fsdp/tensor; -1 fills the devices)."""
  if name == "cpu":
    return {"data": -1, "fsdp": 1, "tensor": 1}
  if name == "gpu8":  # one 8-GPU host: FSDP over NVLink
    return {"data": 1, "fsdp": -1, "tensor": 1}
  if name == "tpu":   # a pod slice: FSDP within the slice, data parallel across (replica)
    return {"replica": 1, "data": 1, "fsdp": -1, "tensor": 1}
  raise ValueError(f"mesh={name!r}: choose cpu, gpu8 or tpu.")


def get_config(arg=None):
  preset, extra = parse_arg(arg, "llamo", _LLAMA_PRESETS,
                            ("pretrained", "lm_workdir", "vae_workdir", "mesh", "mirror"))
  demo = preset == "demo"
  paper = preset in ("1b", "3b", "8b")

  config = ml_collections.ConfigDict()
  config.task = "llamo"
  config.seed = 0
  config.base = ml_collections.ConfigDict(dict(
      pretrained=extra.get("pretrained", f"workdirs/{_LLAMA_PRESETS[preset]}"),
      lm_workdir=extra.get("lm_workdir", ""),
      # The base's shapes (llamo_jax/models/presets.py) where `pretrained` is not there yet:
      # train_compile compiles for a pod without weights.
      preset=_LLAMA_PRESETS[preset]))
  config.vae = ml_collections.ConfigDict(dict(workdir=extra.get("vae_workdir", "workdirs/vae_tiny")))

  config.model = ml_collections.ConfigDict(dict(
      latent_dim=0,                                   # 0: the VAE's
      split="all", text_capacity=None, motion_capacity=None,
      # The demo's flow head is 256 wide x 3 deep: against 128 x 2 it lifts attribute accuracy on
      # held-out test clips from 45.8 to 51.2% of segments, FID 1.6 -> 1.3 (BENCHMARKS.md, "A wider
      # flow head").
      flow_width=256 if demo else 1024, flow_depth=3, k_t=4,
      # Teacher-forcing noise on input latents: the paper's N(0, 0.01); the tiny demo model
      # leans on the motion history unless the noise is larger (measured on the demo: prompt
      # adherence 0.40 at 0.1, 0.55 at 0.3, 0.60 at 0.5; CFG 2.5, 20 samples each).
      sigma_tf=0.5 if demo else 0.1, sigma_tf_schedule="fixed", lambda_text=1.0, lambda_exit=0.1, cfg_dropout=0.1,
      # The demo follows its text much better with two-forward training (held-out test clips: attribute
      # accuracy 28.5 -> 42.1% of segments, R@3 0.46 -> 0.68, FID 10.9 -> 1.5), and better again with a
      # second gradient-free pass (45.8% of segments, 35.9% of clips; BENCHMARKS.md, "LLaMo demo:
      # levers"); [BOM] on the motion expert scored lower (37.9%, R@3 0.59). Not yet measured at the
      # paper's scale.
      bom_expert="text", two_forward=0.5 if demo else 0.0, two_forward_passes=2 if demo else 1,
      first_latent_weight=1.0))
  # Run-time overrides of the pretrained LlamaConfig (not its architecture).
  config.model.llama = ml_collections.ConfigDict(dict(
      dtype="float32" if demo else "bfloat16", scan_layers=True,
      remat_policy="none" if demo else "dots_with_no_batch_dims_saveable"))
  # MoT buffers: per-sequence caps on text / motion tokens (the packer respects them).
  # Sized from the corpus: the tiny tokenizer spends up to 68 text tokens on a T2M
  # example (template + caption + [EOM] [EOS]); clips keep <= 50 latents.
  seq_len = 144 if demo else 512
  config.model.text_capacity = 80 if demo else 256
  config.model.motion_capacity = seq_len - config.model.text_capacity

  config.data = ml_collections.ConfigDict(dict(
      latents="",                   # default: VAE_WORKDIR/latents/<records name>_latents
      seq_len=seq_len, batch_size=16 if demo else 128, max_motion_tokens=50, static_speed=0.05,
      worker_count=0))
  if extra.get("mirror", "0") not in ("0", "1"):
    raise ValueError(f"mirror={extra['mirror']!r}: 1 or 0.")
  if extra.get("mirror") == "1":  # the key only when asked, so runs trained before it still resume
    # Every train clip's left/right mirror (left and right swapped in its captions) joins the
    # latents, encoded by the VAE as trained (records <records name>_mirror, built on first use).
    # Not in the demo: sides at chance (BENCHMARKS.md, "Smaller batches for more steps,
    # mirrored clips, and a second training seed").
    config.data.mirror = True

  # ---------------------------------------------------------------- stages (docs/design.md, Staged recipe)
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-4, warmup_steps=20 if demo else 2000, end_lr_frac=0.1, b1=0.9, b2=0.95,
      eps=1e-8, weight_decay=0.01 if not demo else 0.0, grad_clip=1.0))
  steps = {"align": 200, "joint": 1200, "anneal": 150} if demo else (
      {"align": 100_000, "joint": 200_000, "anneal": 50_000} if paper else
      {"align": 2000, "joint": 4000, "anneal": 1000})
  config.stage_order = ("align", "joint", "anneal")
  config.stages = ml_collections.ConfigDict()
  config.stages.align = ml_collections.ConfigDict(dict(
      steps=steps["align"], mix={"t2m": 0.5, "m2t": 0.5},
      optimizer=dict(lr=3e-3 if demo else 1e-4)))
  config.stages.joint = ml_collections.ConfigDict(dict(
      steps=steps["joint"], mix={"t2m": 0.8, "m2t": 0.2},
      # Per-module lr: the motion expert (initialised from the text expert) moves slower.
      optimizer=dict(lr=2e-3 if demo else 1e-4, lr_multipliers=((r"layers\.motion\.", 1.0 if demo else 0.5),))))
  config.stages.anneal = ml_collections.ConfigDict(dict(
      steps=steps["anneal"], mix={"t2m": 1.0}, drop_static=True,
      optimizer=dict(lr=1e-3 if demo else 1e-4, warmup_steps=0, end_lr_frac=1e-2 if demo else 0.1)))

  mesh = extra.get("mesh", "tpu" if paper else "cpu")
  config.mesh = ml_collections.ConfigDict(_mesh(mesh))
  # Dense bf16 peak per device for the MFU the trainer logs; 0: the device kind's peak
  # (llamo_jax/core/hardware.py; no MFU on a kind it does not know, e.g. CPU).
  config.peak_tflops_per_device = 0.0
  config.logical_axis_rules = ml_collections.FieldReference(None, field_type=list)
  config.grad_accum_steps = 1
  # Decay of the weight EMA that evaluations, sampling and export read (0: none; per stage with
  # stages.NAME.ema_decay; llamo_jax/training/state.py, "Weight EMA").
  config.ema_decay = 0.0

  config.sampling = ml_collections.ConfigDict(dict(
      prompts=PROMPTS, expect=EXPECT, samples_per_prompt=4, num_captions=12, max_latents=40,
      flow_steps=25 if demo else 50, method="euler", flow_dtype="float32",
      backbone_dtype="float32", cfg_scale=2.5, temperature=1.0, exit_threshold=0.5, max_caption_tokens=40))
  # Optional: a text-motion evaluator (configs/evaluator.py workdir) makes each evaluation log a one-pass
  # R-precision and FID of `clips` generated motions (tasks/llamo.py); e.g.
  # --config.t2m_eval.evaluator=/path/to/guo_hml263 (the reference is the VAE run's corpus by default).
  config.t2m_eval = ml_collections.ConfigDict(dict(evaluator="", clips=64, split="val", reference=""))
  config.log_every = 25 if demo else 100
  config.eval_every = 1550 if demo else 10_000
  config.eval_batches = 2 if demo else 20
  config.checkpoint_every = 150 if demo else 5000
  config.max_checkpoints = 2
  config.async_checkpoints = True
  config.stop_after_steps = ml_collections.FieldReference(None, field_type=int)
  return config


def sweep(add):
  """The flow head's CFG dropout and teacher-forcing noise (the paper's two sampling knobs)."""
  for cfg_dropout in (0.05, 0.1, 0.2):
    for sigma_tf in (0.0, 0.1):
      add(**{"config.model.cfg_dropout": cfg_dropout, "config.model.sigma_tf": sigma_tf})
