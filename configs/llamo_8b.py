"""LLaMo on Llama 3.1 8B: configs/llamo.py's recipe, preset 8b.

  python -m llamo_jax.train --config=configs/llamo_8b.py[:KEY=VALUE,...] --workdir=DIR

Keys as in configs/llamo.py (pretrained, lm_workdir, vae_workdir, mesh).
"""
from llamo_jax.config_files import sibling_config


def get_config(arg=None):
  return sibling_config(__file__, "llamo", "8b" + (f",{arg}" if arg else ""))
