"""The README's main job: the whole LLaMo recipe on the bundled synthetic corpus, on CPU.

  python -m llamo_jax.train --config=configs/demo.py --workdir=workdirs/demo
  python -m llamo_jax.train --config=configs/demo.py:smoke --workdir=/tmp/demo_smoke

Runs, each in WORKDIR/NAME and each resumable: lm (stage 0: a tiny text LLM trained on
the corpus captions, so captioning has a language model), vae (the causal motion VAE),
llamo (align -> joint -> anneal from that LM and VAE; its latents are encoded on first
use). The synthetic corpus is built on first use. Ends by printing where the samples,
captions and TensorBoard logs are. Override a part with e.g.
--config.pipeline.llamo.stages.joint.steps=1000.

arg: none (the demo) or `smoke`: the same pipeline and code paths at toy size (24 clips,
a few steps per part, about two CPU minutes), with the corpus and records under WORKDIR;
CI runs it in a venv with the base install only.
"""
import ml_collections

from llamo_jax.core.config_files import sibling_config
from llamo_jax.models import presets


def get_config(arg=None):
  if arg not in (None, "", "smoke"):
    raise ValueError(f"configs/demo.py takes no argument or 'smoke', got {arg!r}.")
  config = ml_collections.ConfigDict()
  config.pipeline_order = ("lm", "vae", "llamo")
  config.pipeline = ml_collections.ConfigDict()
  # "{workdir}" is replaced by the pipeline's --workdir.
  config.pipeline.lm = sibling_config(__file__, "lm", "tiny")
  config.pipeline.vae = sibling_config(__file__, "motion_vae", "tiny")
  # A 4000-clip corpus and a stage-0 LM (so LLaMo's backbone) 128 wide x 4 layers instead of
  # 1000 clips and 64 x 2: on held-out test captions, segment attribute accuracy 19.0 -> 27.5%,
  # R@3 0.32 -> 0.49, FID 16.7 -> 12.6, actions named in captions 42 -> 63% (BENCHMARKS.md,
  # "LLaMo demo: levers"); the wider model costs little on CPU, the corpus about a minute.
  corpus = dict(dir="data/synthetic_20fps_4k", num_motions=4000)
  config.pipeline.lm.data.corpus.update(corpus)
  config.pipeline.lm.model.update(dict(dim=128, n_layers=4, head_dim=32, ffn_dim=384))
  config.pipeline.lm.total_steps = 600
  config.pipeline.vae.data.corpus.update(corpus)
  config.pipeline.vae.data.path = "data/records/synthetic_20fps_4k_hml263"
  # A shorter VAE schedule than :tiny's, to keep the whole demo near 22 CPU minutes (README).
  config.pipeline.vae.total_steps = 2500
  config.pipeline.vae.eval_every = 2500
  config.pipeline.vae.checkpoint_every = 500
  config.pipeline.llamo = sibling_config(__file__, "llamo", "demo,pretrained={workdir}/lm/pretrained,"
                                         "lm_workdir={workdir}/lm,vae_workdir={workdir}/vae")
  if arg == "smoke":
    _shrink(config)
  return config


def _shrink(config):
  """The smoke preset: every part at toy size, all data under the pipeline's workdir."""
  corpus = dict(dir="{workdir}/corpus", num_motions=24, processes=1)
  lm, vae, llamo = config.pipeline.lm, config.pipeline.vae, config.pipeline.llamo
  lm.data.corpus.update(corpus)
  # The tiny preset's shapes (the demo widens them): at these shapes the text path through the MoT is
  # bit-identical to the base LM (tests/tasks/test_llamo_task.py); wider, XLA reassociates (~3e-7).
  tiny = presets.get_preset("tiny")
  lm.model.update({k: getattr(tiny, k) for k in ("dim", "n_layers", "head_dim", "ffn_dim")})
  lm.update(dict(total_steps=4, log_every=2, eval_every=4, eval_batches=1, checkpoint_every=4,
                 tokenizer_vocab_size=300))
  lm.data.update(dict(seq_len=64, batch_size=8))
  vae.data.corpus.update(corpus)
  vae.data.update(dict(path="{workdir}/records/synthetic_hml263", batch_size=8, max_len=48))
  vae.update(dict(total_steps=4, log_every=2, eval_every=0, checkpoint_every=4))
  vae.model.width = 32
  vae.optimizer.warmup_steps = 1
  for stage in llamo.stage_order:
    llamo.stages[stage].steps = 2
  llamo.data.update(dict(seq_len=128, batch_size=8, max_motion_tokens=12))
  llamo.model.update(dict(text_capacity=128, motion_capacity=24, flow_width=32))
  llamo.optimizer.warmup_steps = 1
  llamo.update(dict(log_every=1, eval_every=6, eval_batches=1, checkpoint_every=2))
  llamo.sampling.update(dict(prompts=("a person walks forward.", "a person jumps."),
                             expect=("walk direction=forward", "jump count=1"), samples_per_prompt=2,
                             max_latents=4, flow_steps=2, num_captions=2, max_caption_tokens=4))
