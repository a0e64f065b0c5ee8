"""LLaMo in PyTorch: loads a `python -m llamo_jax.export --format=pytorch` folder and runs it.

A standalone package: it imports torch, numpy, safetensors, json and a tokenizer
backend (sentencepiece / HF tokenizers), never jax, flax or another llamo_jax
package, so a folder exported here runs where JAX is not installed (tests/test_layering.py
checks the imports; tests/pytorch/test_parity.py runs torch_generate with jax unimportable).
Modules:

  layout     the folder's file names and config.json keys (no torch: the exporter reads it)
  bundle     the exported folder's layout (file names, config.json keys) and `load(DIR)`
  model      the LLaMo (MoT Llama, [BOM]/[EOM], latent adapter, flow head, exit head)
  vae        the causal motion VAE (encoder and decoder, offline)
  sampling   text to motion (flow ODE + CFG + exit head, KV cache) and greedy captioning
  motion     motion features -> joint positions (hml263, mm272) and a BVH writer, numpy
  tokenizer  text <-> ids with the model's special ids

model, vae, sampling and bundle need the torch extra: pip install -e ".[torch]".
The JAX twins: models/llamo.py, models/motion_vae.py, generation/text_to_motion.py,
generation/captioning.py, motion/humanml3d.py, motion/rep272.py, data/tokenizer.py.
"""
