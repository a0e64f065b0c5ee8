"""Sampling from a trained LLaMo: text to motion, streaming, VAE decoding, captioning.

One module per concern; import the one you need (this package re-exports nothing):

  prompts         left-padded prompt batches, prompt checks, per-sequence random keys
  text_to_motion  KV-cached text to motion (flow ODE + CFG + exit head, one jitted loop)
  decode          VAE decoding of normalised latents to normalised feature frames
  streaming       the same text-to-motion steps jitted separately, with the VAE's
                  `decode_step`: 4 new frames per latent as soon as it exists
  captioning      greedy motion-to-text decoding with a KV cache (one jitted loop)

Imports go one way: prompts <- text_to_motion <- streaming -> decode, and
prompts <- captioning; nothing here imports tasks/, the trainer or the programs.
Design: docs/design.md, section "Generation".

Dimension names: B batch, T prompt length, K latents, C latent, D model, V vocab.
"""
