"""Shared pieces of the generation tests: a tiny LLaMo, random prompts, the full forward."""
from flax import nnx
import jax
import numpy as np

from llamo_jax.models import presets
from llamo_jax.models.llamo import LLaMo, LLaMoConfig, bom_id, eom_id

TINY = presets.get_preset("tiny")
CFG = LLaMoConfig(llama=TINY, latent_dim=4, flow_width=32, flow_depth=2)
C, V, BOM, EOM = CFG.latent_dim, TINY.vocab_size, bom_id(CFG), eom_id(CFG)
SAMPLING = dict(flow_steps=3, temperature=0.8, exit_threshold=0.7)


def make_model():
  """A tiny LLaMo whose zero-initialised flow-head layers are made random (else the
  head outputs 0 and every latent would be its noise, whatever h is)."""
  m = LLaMo(CFG, rngs=nnx.Rngs(0))
  state = nnx.state(m.flow_head, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  nnx.update(m.flow_head, jax.tree.unflatten(treedef, leaves))
  return m


def prompt(length, seed):
  """[BOS]-like random text of `length - 1` tokens, then [BOM]."""
  rng = np.random.default_rng(seed)
  return np.concatenate([rng.integers(1, V, length - 1), [BOM]]).astype(np.int32)


@nnx.jit
def forward(model, tokens, latents, modality, positions, segment_ids):
  return model(tokens, latents, modality, positions, segment_ids)[:2]
