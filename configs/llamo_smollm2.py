"""LLaMo on SmolLM2-135M-Instruct (imported from its GGUF: see README "LLaMo on SmolLM2"): configs/llamo.py's recipe, preset smollm2.

  python -m llamo_jax.train --config=configs/llamo_smollm2.py[:KEY=VALUE,...] --workdir=DIR

Keys as in configs/llamo.py (pretrained, lm_workdir, vae_workdir, mesh).
"""
from llamo_jax.core.config_files import preset_alias

get_config = preset_alias(__file__, "llamo", "smollm2")
