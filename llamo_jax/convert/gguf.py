"""llama.cpp GGUF files (architecture "llama") -> LlamaConfig, HF-named tensors, Tokenizer.

Tensors are dequantized to float32 with `gguf.quants.dequantize` and renamed
to the HF names of `convert/hf.py`, which then maps them into our params.
llama.cpp's converter permutes the rows of attn_q/attn_k so that rotary pairs
are interleaved (dims 2i, 2i+1); we undo that so dims i and i+H/2 pair up
again, as our rotate-half RoPE expects.

The tokenizer (tokenizer.ggml.model == "gpt2", byte-level BPE) is rebuilt
with the `tokenizers` library from the file's tokens, merges and token types.
"""
from __future__ import annotations

import pathlib
import re
from typing import Any

import gguf
import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from llamo_jax.convert import hf as hf_lib
from llamo_jax.convert.hf import ConversionError
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models.attention import RopeScaling, rope_inv_freq
from llamo_jax.models.llama import LlamaConfig

# GGUF name (after "blk.N.") -> HF name (after "model.layers.N.").
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

# Pre-tokenizer split patterns by `tokenizer.ggml.pre` (llama.cpp's names).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_TOKENIZERS = ("default", "gpt2", "smollm", "llama-bpe", "llama3", "llama-v3")


_REQUIRED = object()


def _field(reader: gguf.GGUFReader, key: str, default: Any = _REQUIRED) -> Any:
  """A metadata value; a missing key is an error unless a default is given."""
  field = reader.get_field(key)
  if field is None:
    if default is _REQUIRED:
      raise ConversionError(f"GGUF metadata key {key!r} is missing.")
    return default
  return field.contents()


def config_from_gguf(reader: gguf.GGUFReader, **overrides: Any) -> LlamaConfig:
  """LlamaConfig from the llama.* metadata (+ `output.weight` presence for tying)."""
  arch = _field(reader, "general.architecture")
  if arch != "llama":
    raise ConversionError(f"Unsupported GGUF architecture {arch!r}; only 'llama' is supported.")
  if int(_field(reader, "llama.expert_count", 0)):
    raise ConversionError("Mixture-of-experts GGUF files (llama.expert_count > 0) are not supported.")
  scaling_type = _field(reader, "llama.rope.scaling.type", None)
  if scaling_type not in (None, "none"):
    raise ConversionError(f"Unsupported GGUF rope scaling {scaling_type!r}.")
  n_heads = int(_field(reader, "llama.attention.head_count"))
  dim = int(_field(reader, "llama.embedding_length"))
  head_dim = int(_field(reader, "llama.attention.key_length", dim // n_heads))
  rope_dims = int(_field(reader, "llama.rope.dimension_count", head_dim))
  if rope_dims != head_dim:
    raise ConversionError(f"Partial RoPE (rope.dimension_count={rope_dims} < head_dim={head_dim}) "
                          "is not supported.")
  names = {t.name for t in reader.tensors}
  embed = next(t for t in reader.tensors if t.name == "token_embd.weight")
  fields = dict(
      vocab_size=int(_field(reader, "llama.vocab_size", int(embed.shape[1]))), dim=dim,
      n_layers=int(_field(reader, "llama.block_count")), n_heads=n_heads,
      n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)), head_dim=head_dim,
      ffn_dim=int(_field(reader, "llama.feed_forward_length")),
      norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
      rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
      tie_embeddings="output.weight" not in names,
      max_seq_len=int(_field(reader, "llama.context_length")))
  if "rope_freqs.weight" in names:
    fields["rope_scaling"] = _llama3_scaling_from_factors(
        _dequantize(next(t for t in reader.tensors if t.name == "rope_freqs.weight")),
        head_dim, fields["rope_theta"])
  fields.update(overrides)
  return LlamaConfig(**fields)


def _llama3_scaling_from_factors(factors: np.ndarray, head_dim: int, theta: float) -> RopeScaling:
  """The llama3 RopeScaling whose per-frequency divisors equal `rope_freqs` [H/2].

  llama.cpp stores Llama 3.x scaling only as these divisors. We accept them
  when the standard Llama 3 parameters (low 1, high 4, original length 8192,
  factor = largest divisor) reproduce them, and refuse anything else.
  """
  scaling = RopeScaling(factor=float(factors.max()), low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192)
  base = rope_inv_freq(head_dim, theta)
  implied = base / rope_inv_freq(head_dim, theta, scaling)
  if factors.shape != implied.shape or not np.allclose(factors, implied, rtol=1e-4):
    raise ConversionError("GGUF rope_freqs do not match Llama 3 RoPE scaling with the standard "
                          "parameters; this rope scaling is not supported.")
  return scaling


def _dequantize(tensor: Any) -> np.ndarray:
  """float32 array in numpy order (GGUF shapes list the fastest dim first)."""
  values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
  return np.asarray(values, np.float32).reshape(tuple(int(d) for d in reversed(tensor.shape)))


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's q/k row permutation: w [heads*H, D] -> HF row order.

  llama.cpp stores row (head, i, pair) at what HF calls (head, pair, i), i < H/2.
  """
  rows = w.shape[0]
  return (w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def hf_tensors_from_gguf(reader: gguf.GGUFReader, cfg: LlamaConfig) -> dict[str, np.ndarray]:
  """All weights as float32 arrays under HF names (q/k rows un-permuted)."""
  out = {}
  for tensor in reader.tensors:
    name = tensor.name
    if name == "rope_freqs.weight":
      continue  # already folded into cfg.rope_scaling
    match = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if match and match.group(2) in _LAYER_NAMES:
      layer, suffix = match.groups()
      hf_name = f"model.layers.{layer}.{_LAYER_NAMES[suffix]}"
    else:
      hf_name = _GLOBAL_NAMES.get(name, name)  # unknown names surface as "unexpected tensors"
    w = _dequantize(tensor)
    if match and match.group(2) == "attn_q.weight":
      w = unpermute_rope_rows(w, cfg.n_heads)
    elif match and match.group(2) == "attn_k.weight":
      w = unpermute_rope_rows(w, cfg.n_kv_heads)
    out[hf_name] = w
  return out


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in printable:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def tokenizer_from_gguf(reader: gguf.GGUFReader) -> Tokenizer:
  """The byte-level BPE tokenizer described by the tokenizer.ggml.* metadata.

  Built as transformers builds it from a GGUF (vocab, merges, control tokens
  as special tokens, user-defined tokens as added tokens), with the split
  rule named by `tokenizer.ggml.pre`: "smollm" isolates each digit first,
  as llama.cpp and the original SmolLM2 tokenizer do.
  """
  model_type = _field(reader, "tokenizer.ggml.model", None)
  if model_type is None:
    raise ConversionError("The GGUF file has no tokenizer (tokenizer.ggml.model is missing).")
  if model_type != "gpt2":
    raise ConversionError(f"GGUF tokenizer model {model_type!r} is not supported; only 'gpt2' "
                          "(byte-level BPE, as Llama 3 and SmolLM2 use).")
  pre = _field(reader, "tokenizer.ggml.pre", "default")
  if pre not in _PRE_TOKENIZERS:
    raise ConversionError(f"GGUF pre-tokenizer {pre!r} is not supported; known: {list(_PRE_TOKENIZERS)}.")
  tokens = list(_field(reader, "tokenizer.ggml.tokens"))
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
  token_types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
  spelling = _bytes_to_unicode()
  alphabet = set(spelling.values())
  # Tokens written with characters outside the byte alphabet are respelled byte by byte.
  vocab = {}
  for index, token in enumerate(tokens):
    if not set(token) <= alphabet:
      token = "".join(spelling[b] for b in token.encode("utf-8"))
    vocab[token] = index  # a later duplicate wins, as in transformers
  tok = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None,
                                        continuing_subword_prefix="", end_of_word_suffix="",
                                        fuse_unk=False))
  if pre in ("llama-bpe", "llama3", "llama-v3"):
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  elif pre == "smollm":
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
  else:
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  special_ids = {}
  for name, key in (("bos_id", "bos_token_id"), ("eos_id", "eos_token_id"),
                    ("pad_id", "padding_token_id")):
    value = _field(reader, f"tokenizer.ggml.{key}", None)
    special_ids[name] = None if value is None else int(value)
  special = [t for t, kind in zip(tokens, token_types)
             if kind == _TOKEN_TYPE_CONTROL and set(t) <= alphabet]
  special += [tokens[i] for i in special_ids.values() if i is not None and tokens[i] not in special]
  tok.add_special_tokens([tokenizers.AddedToken(t, normalized=False, special=True) for t in special])
  user = [t for t, kind in zip(tokens, token_types) if kind == _TOKEN_TYPE_USER_DEFINED and t in vocab]
  if user:
    tok.add_tokens([tokenizers.AddedToken(t, normalized=False, special=False) for t in user])
  if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
    raise ConversionError(f"Rebuilt GGUF tokenizer has {tok.get_vocab_size(with_added_tokens=True)} "
                          f"ids, the file lists {len(tokens)} tokens.")
  return Tokenizer(tok, **special_ids)


def read_gguf(path: str | pathlib.Path, **overrides: Any
              ) -> tuple[LlamaConfig, dict[str, Any], Tokenizer]:
  """(config, our param pure dict, tokenizer) of a llama GGUF file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No GGUF file at {path}.")
  try:
    reader = gguf.GGUFReader(str(path))
  except (ValueError, OSError) as e:
    raise ConversionError(f"{path} is not a readable GGUF file: {e}") from e
  cfg = config_from_gguf(reader, **overrides)
  tokenizer = tokenizer_from_gguf(reader)
  params = hf_lib.params_from_hf(hf_tensors_from_gguf(reader, cfg), cfg, source=str(path))
  return cfg, params, tokenizer
