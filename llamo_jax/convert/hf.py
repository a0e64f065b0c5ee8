"""HF transformers Llama checkpoints <-> our Llama param tree (no torch needed).

Our params are the pure-dict form of `nnx.state(Llama)` (see models/llama.py):
layers stacked on a leading L axis, projections as einsum kernels. The HF
side is a flat {name: array} dict as in `model.safetensors`:

  model.embed_tokens.weight [V,D]                 -> embed.embedding [V,D]
  model.layers.i.self_attn.q_proj.weight [N*H,D]  -> layers.text.q.kernel [L,D,N,H]
  model.layers.i.self_attn.{k,v}_proj [K*H,D]     -> layers.text.{k,v}.kernel [L,D,K,H]
  model.layers.i.self_attn.o_proj.weight [D,N*H]  -> layers.text.o.kernel [L,N,H,D]
  model.layers.i.mlp.{gate,up}_proj.weight [F,D]  -> layers.text.{gate,up}.kernel [L,D,F]
  model.layers.i.mlp.down_proj.weight [D,F]       -> layers.text.down.kernel [L,F,D]
  model.layers.i.input_layernorm.weight [D]       -> layers.text.attn_norm.scale [L,D]
  model.layers.i.post_attention_layernorm [D]     -> layers.text.mlp_norm.scale [L,D]
  model.norm.weight [D]                           -> final_norm.scale [D]
  lm_head.weight [V,D]                            -> lm_head.kernel [D,V] (absent when tied)

All transforms are pure numpy; arrays keep their dtype unless a target dtype
is given. bfloat16 arrays are ml_dtypes.bfloat16 numpy arrays.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.flax

from llamo_jax.core.errors import InputError
from llamo_jax.models.llama import DTYPES, LlamaConfig

ARCHITECTURE = "LlamaForCausalLM"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# transformers' LlamaConfig defaults for keys a config.json may leave out.
_HF_DEFAULTS = {
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "max_position_embeddings": 2048, "hidden_act": "silu", "attention_bias": False,
    "mlp_bias": False,
}
# Per-layer tensors: HF suffix -> (our module name, kind of transform).
_LAYER_TENSORS = {
    "input_layernorm.weight": ("attn_norm", "scale"),
    "self_attn.q_proj.weight": ("q", "qkv"),
    "self_attn.k_proj.weight": ("k", "qkv"),
    "self_attn.v_proj.weight": ("v", "qkv"),
    "self_attn.o_proj.weight": ("o", "o"),
    "post_attention_layernorm.weight": ("mlp_norm", "scale"),
    "mlp.gate_proj.weight": ("gate", "dense"),
    "mlp.up_proj.weight": ("up", "dense"),
    "mlp.down_proj.weight": ("down", "dense"),
}


class ConversionError(InputError, ValueError):
  """A checkpoint that cannot be converted: unsupported model, missing or misshapen tensors."""


def host_device() -> jax.Device:
  """Where converted arrays live: the CPU (the default device if JAX runs without a CPU backend)."""
  try:
    return jax.local_devices(backend="cpu")[0]
  except RuntimeError:
    return jax.local_devices()[0]


# ---------------------------------------------------------------------------
# Configs.
# ---------------------------------------------------------------------------
def read_hf_config(folder: str | pathlib.Path) -> dict[str, Any]:
  """The `config.json` of an HF model folder."""
  path = pathlib.Path(folder) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: {folder} is not an HF model folder.")
  return json.loads(path.read_text())


def llama_config_from_hf(hf: Mapping[str, Any], **overrides: Any) -> LlamaConfig:
  """LlamaConfig of an HF LlamaForCausalLM config.json dict.

  Reads rope settings from `rope_parameters` (transformers 5) or from
  `rope_theta` + `rope_scaling` (older files). `overrides` set our run-time
  fields (dtype, param_dtype, scan_layers, remat_policy, ...).

  Raises:
    ConversionError: the config is not a plain Llama we can reproduce.
  """
  model_type = hf.get("model_type")
  architectures = hf.get("architectures") or [ARCHITECTURE]
  if model_type != "llama" or ARCHITECTURE not in architectures:
    raise ConversionError(
        f"Unsupported architecture: model_type={model_type!r}, architectures={architectures}. "
        f"Only model_type='llama' with {ARCHITECTURE} is supported.")
  get = lambda key: hf[key] if hf.get(key) is not None else _HF_DEFAULTS[key]
  unsupported = []
  if get("hidden_act") != "silu":
    unsupported.append(f"hidden_act={get('hidden_act')!r} (need 'silu')")
  if get("attention_bias") or get("mlp_bias"):
    unsupported.append("attention_bias/mlp_bias (biases)")
  if hf.get("sliding_window") is not None or hf.get("use_sliding_window"):
    unsupported.append(f"sliding_window={hf.get('sliding_window')!r}")
  rope = dict(hf.get("rope_parameters") or {})
  if not rope:
    rope = dict(hf.get("rope_scaling") or {})
    rope.setdefault("rope_theta", get("rope_theta"))
  rope_type = rope.pop("rope_type", rope.pop("type", "default"))
  rope_theta = float(rope.pop("rope_theta", get("rope_theta")))
  if rope_type == "default":
    rope_scaling = None
    extra = {key: value for key, value in rope.items() if value is not None}
    if extra:
      unsupported.append(f"rope parameters {extra} with rope_type='default'")
  elif rope_type == "llama3":
    rope_scaling = rope
  else:
    unsupported.append(f"rope_type={rope_type!r} (need 'default' or 'llama3')")
  if unsupported:
    raise ConversionError("Unsupported Llama variant: " + "; ".join(unsupported) + ".")
  n_heads = int(hf["num_attention_heads"])
  fields = dict(
      vocab_size=int(hf["vocab_size"]), dim=int(hf["hidden_size"]),
      n_layers=int(hf["num_hidden_layers"]), n_heads=n_heads,
      n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
      head_dim=int(hf.get("head_dim") or hf["hidden_size"] // n_heads),
      ffn_dim=int(hf["intermediate_size"]), norm_eps=float(get("rms_norm_eps")),
      rope_theta=rope_theta, rope_scaling=rope_scaling,
      tie_embeddings=bool(get("tie_word_embeddings")),
      max_seq_len=int(get("max_position_embeddings")))
  fields.update(overrides)
  return LlamaConfig(**fields)


def hf_config_from_llama(cfg: LlamaConfig, *, bos_id: int | None = None, eos_id: int | None = None,
                         pad_id: int | None = None) -> dict[str, Any]:
  """A transformers-5 `config.json` dict for LlamaForCausalLM with `cfg`'s shapes."""
  rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling is not None:
    s = cfg.rope_scaling
    rope = {"rope_type": "llama3", "rope_theta": cfg.rope_theta, "factor": s.factor,
            "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings}
  return {
      "architectures": [ARCHITECTURE], "model_type": "llama",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_dim,
      "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
      "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
      "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len,
      "rms_norm_eps": cfg.norm_eps, "rope_parameters": rope,
      "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False, "mlp_bias": False,
      "attention_dropout": 0.0, "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
      "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id,
      "dtype": cfg.param_dtype,
  }


# ---------------------------------------------------------------------------
# safetensors files.
# ---------------------------------------------------------------------------
def load_safetensors(folder: str | pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of `model.safetensors` or of the shards named in `model.safetensors.index.json`."""
  folder = pathlib.Path(folder)
  if (folder / INDEX_FILE).is_file():
    weight_map = json.loads((folder / INDEX_FILE).read_text()).get("weight_map")
    if not isinstance(weight_map, dict):
      raise ConversionError(f"{folder / INDEX_FILE} has no 'weight_map'.")
    files = sorted(set(weight_map.values()))
  elif (folder / SINGLE_FILE).is_file():
    weight_map, files = None, [SINGLE_FILE]
  else:
    raise FileNotFoundError(f"No {SINGLE_FILE} or {INDEX_FILE} in {folder}.")
  tensors = {}
  # The flax backend reads bfloat16 (numpy's does not); keep the copies on the host.
  with jax.default_device(host_device()):
    for name in files:
      path = folder / name
      if not path.is_file():
        raise FileNotFoundError(f"Shard {path} named in {folder / INDEX_FILE} is missing.")
      try:
        with safetensors.safe_open(str(path), framework="flax") as f:
          for key in f.keys():
            tensors[key] = np.asarray(f.get_tensor(key))
      except (safetensors.SafetensorError, OSError, ValueError) as e:
        raise ConversionError(f"{path} is damaged or truncated ({type(e).__name__}: {str(e)[:200]}); "
                              "download it again (compare its size with the source's).") from e
  if weight_map is not None:
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
      raise ConversionError(f"Tensors {missing[:5]} listed in {INDEX_FILE} are not in its shards.")
  return tensors


def save_safetensors(tensors: Mapping[str, np.ndarray], path: str | pathlib.Path) -> None:
  """Writes {name: array} as one safetensors file with PyTorch-format metadata."""
  with jax.default_device(host_device()):
    arrays = {k: jnp.asarray(v) for k, v in tensors.items()}
    safetensors.flax.save_file(arrays, str(path), metadata={"format": "pt"})


# ---------------------------------------------------------------------------
# Tensor mapping.
# ---------------------------------------------------------------------------
def expected_hf_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """{HF tensor name: shape} of a LlamaForCausalLM with `cfg`'s shapes."""
  d, n, k, h, f, v = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
  per_layer = {
      "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
      "self_attn.q_proj.weight": (n * h, d), "self_attn.k_proj.weight": (k * h, d),
      "self_attn.v_proj.weight": (k * h, d), "self_attn.o_proj.weight": (d, n * h),
      "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d), "mlp.down_proj.weight": (d, f),
  }
  shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
  for i in range(cfg.n_layers):
    shapes.update({f"model.layers.{i}.{s}": shape for s, shape in per_layer.items()})
  if not cfg.tie_embeddings:
    shapes["lm_head.weight"] = (v, d)
  return shapes


def params_from_hf(tensors: Mapping[str, np.ndarray], cfg: LlamaConfig, *,
                   source: str = "checkpoint") -> dict[str, Any]:
  """Our param pure dict from HF tensors; arrays are cast to `cfg.param_dtype`.

  Raises:
    ConversionError: missing tensors, unexpected tensors, or a shape mismatch
      (naming the tensor, the expected and the found shape).
  """
  expected = expected_hf_shapes(cfg)
  tensors = dict(tensors)
  # Old checkpoints carry the (recomputed) rotary buffer; it is not a weight.
  for name in [n for n in tensors if n.endswith("rotary_emb.inv_freq")]:
    del tensors[name]
  if cfg.tie_embeddings and "lm_head.weight" in tensors:
    if not np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]):
      raise ConversionError(f"{source}: tie_word_embeddings is set but lm_head.weight differs from "
                            "model.embed_tokens.weight.")
    del tensors["lm_head.weight"]
  missing = [n for n in expected if n not in tensors]
  unexpected = sorted(set(tensors) - set(expected))
  problems = []
  if unexpected:
    problems.append(f"has {len(unexpected)} tensors a plain Llama does not, e.g. {unexpected[:5]} "
                    "(this architecture is not supported)")
  if missing:
    problems.append(f"lacks {len(missing)} tensors the config needs, e.g. {missing[:5]}")
  if problems:
    raise ConversionError(f"{source} " + " and ".join(problems) + ".")
  for name, shape in expected.items():
    if tuple(tensors[name].shape) != shape:
      raise ConversionError(f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                            f"expected {shape} from the config.")
  dtype = DTYPES[cfg.param_dtype]
  cast = lambda x: np.asarray(x, dtype=dtype)
  d, n, k, h = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim

  def convert(kind: str, module: str, w: np.ndarray) -> np.ndarray:
    if kind == "scale":
      return w
    if kind == "qkv":  # [heads*H, D] -> [D, heads, H]
      return w.T.reshape(d, n if module == "q" else k, h)
    if kind == "o":    # [D, N*H] -> [N, H, D]
      return w.T.reshape(n, h, d)
    return w.T         # [out, in] -> [in, out]

  text = {}
  for suffix, (module, kind) in _LAYER_TENSORS.items():
    stacked = np.stack([cast(convert(kind, module, tensors[f"model.layers.{i}.{suffix}"]))
                        for i in range(cfg.n_layers)])
    text[module] = {"scale" if kind == "scale" else "kernel": stacked}
  params = {
      "embed": {"embedding": cast(tensors["model.embed_tokens.weight"])},
      "layers": {"text": text},
      "final_norm": {"scale": cast(tensors["model.norm.weight"])},
  }
  if not cfg.tie_embeddings:
    params["lm_head"] = {"kernel": cast(tensors["lm_head.weight"].T)}
  return params


def params_to_hf(params: Mapping[str, Any], cfg: LlamaConfig) -> dict[str, np.ndarray]:
  """HF tensors {name: array [out, in]} from our param pure dict (exact inverse of params_from_hf)."""
  d, n, h = cfg.dim, cfg.n_heads, cfg.head_dim
  text = params["layers"]["text"]
  out = {"model.embed_tokens.weight": np.asarray(params["embed"]["embedding"]),
         "model.norm.weight": np.asarray(params["final_norm"]["scale"])}
  for suffix, (module, kind) in _LAYER_TENSORS.items():
    stacked = np.asarray(text[module]["scale" if kind == "scale" else "kernel"])
    for i in range(cfg.n_layers):
      w = stacked[i]
      if kind == "qkv":
        w = w.reshape(d, -1).T
      elif kind == "o":
        w = w.reshape(n * h, d).T
      elif kind == "dense":
        w = w.T
      out[f"model.layers.{i}.{suffix}"] = np.ascontiguousarray(w)
  if not cfg.tie_embeddings:
    out["lm_head.weight"] = np.ascontiguousarray(np.asarray(params["lm_head"]["kernel"]).T)
  return out
