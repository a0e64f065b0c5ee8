"""LLaMo on Llama 3.1 8B: configs/llamo.py's recipe, preset 8b.

  python -m llamo_jax.train --config=configs/llamo_8b.py[:KEY=VALUE,...] --workdir=DIR

Keys as in configs/llamo.py (pretrained, lm_workdir, vae_workdir, mesh).
"""
from llamo_jax.core.config_files import preset_alias

get_config = preset_alias(__file__, "llamo", "8b")
