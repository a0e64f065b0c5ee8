"""The README's main job: the whole LLaMo recipe on the bundled synthetic corpus, on CPU.

  python -m llamo_jax.train --config=configs/demo.py --workdir=workdirs/demo

Runs, each in WORKDIR/NAME and each resumable: lm (stage 0: a tiny text LLM trained on
the corpus captions, so captioning has a language model), vae (the causal motion VAE),
llamo (align -> joint -> anneal from that LM and VAE; its latents are encoded on first
use). The synthetic corpus is built on first use. Ends by printing where the samples,
captions and TensorBoard logs are. Override a part with e.g.
--config.pipeline.llamo.stages.joint.steps=1000.
"""
import ml_collections

from llamo_jax.config_files import sibling_config


def get_config(arg=None):
  if arg:
    raise ValueError(f"configs/demo.py takes no argument, got {arg!r}.")
  config = ml_collections.ConfigDict()
  config.pipeline_order = ("lm", "vae", "llamo")
  config.pipeline = ml_collections.ConfigDict()
  # "{workdir}" is replaced by the pipeline's --workdir.
  config.pipeline.lm = sibling_config(__file__, "lm", "tiny")
  config.pipeline.vae = sibling_config(__file__, "motion_vae", "tiny")
  # A shorter VAE schedule than :tiny's, to keep the whole demo near 15 CPU minutes.
  config.pipeline.vae.total_steps = 2500
  config.pipeline.vae.eval_every = 2500
  config.pipeline.vae.checkpoint_every = 500
  config.pipeline.llamo = sibling_config(__file__, "llamo", "demo,pretrained={workdir}/lm/pretrained,"
                                         "lm_workdir={workdir}/lm,vae_workdir={workdir}/vae")
  return config
