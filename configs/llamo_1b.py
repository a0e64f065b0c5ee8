"""LLaMo on Llama 3.2 1B: configs/llamo.py's recipe, preset 1b.

  python -m llamo_jax.train --config=configs/llamo_1b.py[:KEY=VALUE,...] --workdir=DIR

Keys as in configs/llamo.py (pretrained, lm_workdir, vae_workdir, mesh).
"""
from llamo_jax.core.config_files import preset_alias

get_config = preset_alias(__file__, "llamo", "1b")
