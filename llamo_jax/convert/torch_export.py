"""A LLaMo and its motion VAE -> the folder llamo_jax.pytorch loads (no torch needed here).

`write_export(out, model, vae, ...)` writes config.json, model.safetensors,
vae.safetensors and tokenizer/ as llamo_jax/pytorch/layout.py describes. Tensors are
float32; the text expert uses transformers' Llama names (`hf.params_to_hf`), the
motion expert the same suffixes under model.motion_layers.i, every other Linear the
torch layout weight [out,in] (+ bias), every conv weight [Cout,Cin,k].

Supported: split "all" | "ffn", tied or untied embeddings, Llama-3 rope scaling, any
dtype (exported as float32); the VAE's continuous bottleneck (an FSQ VAE is refused).
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Mapping

from flax import nnx
from flax import traverse_util
import numpy as np

from llamo_jax.convert import hf as hf_lib
from llamo_jax.data import sequences
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import motion_vae as vae_lib
from llamo_jax.motion import skeleton
from llamo_jax.pytorch import layout


def _pure(module: nnx.Module) -> dict[str, Any]:
  """Param pure dict of a module, as float32 numpy arrays."""
  state = nnx.state(module, nnx.Param).to_pure_dict()
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32)
                                       for k, v in traverse_util.flatten_dict(state).items()})


def _linear_tensors(prefix: str, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Flattened {prefix.path.weight [out,in], .bias} from a tree of {kernel [in,out], bias}."""
  out = {}
  for path, value in traverse_util.flatten_dict(params).items():
    *mods, leaf = map(str, path)
    name = ".".join([prefix, *mods])
    if leaf == "kernel":
      out[f"{name}.weight"] = np.ascontiguousarray(value.T)
    elif leaf == "bias":
      out[f"{name}.bias"] = value
    else:
      raise ValueError(f"unexpected parameter {prefix}.{'.'.join(map(str, path))}")
  return out


def llamo_tensors(model: llamo_lib.LLaMo) -> dict[str, np.ndarray]:
  """{name: float32 array} of the whole LLaMo (layout.py)."""
  cfg = model.config
  params = _pure(model)
  out = hf_lib.params_to_hf(params, cfg.llama)
  motion = hf_lib.params_to_hf(dict(params, layers={"text": params["layers"]["motion"]}), cfg.llama)
  out.update({k.replace("model.layers.", "model.motion_layers."): v for k, v in motion.items()
              if k.startswith("model.layers.")})
  out["special_embed.weight"] = params["special_embed"]["embedding"]
  out["motion_in.weight"] = np.ascontiguousarray(params["motion_in"]["kernel"].T)
  out.update(_linear_tensors("flow_head", params["flow_head"]))
  out.update(_linear_tensors("exit_head", params["exit_head"]))
  return out


def vae_tensors(vae: vae_lib.MotionVAE) -> dict[str, np.ndarray]:
  """{name: float32 array} of the VAE's encoder and decoder (conv weights [Cout,Cin,k])."""
  if vae.cfg.quantizer != "continuous":
    raise ValueError(f"the motion VAE has quantizer={vae.cfg.quantizer!r}; the PyTorch export "
                     "supports the continuous bottleneck LLaMo uses only.")
  out = {}
  for path, value in traverse_util.flatten_dict(_pure(vae)).items():
    *mods, leaf = map(str, path)
    name = ".".join(mods)
    if leaf == "kernel":
      out[f"{name}.weight"] = np.ascontiguousarray(np.transpose(value, (2, 1, 0)))
    else:
      out[f"{name}.{leaf}"] = value
  return out


def llamo_config_dict(cfg: llamo_lib.LLaMoConfig) -> dict[str, Any]:
  """config.json's "llamo" section."""
  lc = cfg.llama
  if cfg.split not in layout.SPLITS:
    raise ValueError(f"LLaMo split={cfg.split!r} has no PyTorch implementation ({layout.SPLITS}).")
  scaling = None
  if lc.rope_scaling is not None:
    s = lc.rope_scaling
    scaling = {"factor": s.factor, "low_freq_factor": s.low_freq_factor,
               "high_freq_factor": s.high_freq_factor,
               "original_max_position_embeddings": s.original_max_position_embeddings}
  d = {"vocab_size": lc.vocab_size, "dim": lc.dim, "n_layers": lc.n_layers, "n_heads": lc.n_heads,
       "n_kv_heads": lc.n_kv_heads, "head_dim": lc.head_dim, "ffn_dim": lc.ffn_dim,
       "norm_eps": lc.norm_eps, "rope_theta": lc.rope_theta, "rope_scaling": scaling,
       "tie_embeddings": lc.tie_embeddings, "latent_dim": cfg.latent_dim, "split": cfg.split,
       "flow_width": cfg.flow_width, "flow_depth": cfg.flow_depth, "bom_expert": cfg.bom_expert}
  assert tuple(d) == layout.LLAMO_FIELDS
  return d


def vae_config_dict(cfg: vae_lib.MotionVAEConfig) -> dict[str, Any]:
  """config.json's "vae" section."""
  if cfg.activation not in layout.ACTIVATIONS:
    raise ValueError(f"VAE activation {cfg.activation!r} has no PyTorch implementation.")
  return {k: getattr(cfg, k) for k in layout.VAE_FIELDS}


def write_export(out: str | pathlib.Path, model: llamo_lib.LLaMo, vae: vae_lib.MotionVAE,
                 tokenizer: Tokenizer, *, representation: str, fps: float,
                 feature_mean: np.ndarray, feature_std: np.ndarray, latent_mean: np.ndarray,
                 latent_std: np.ndarray, sampling: Mapping[str, Any], source: str = "") -> None:
  """Writes the export of `model` + `vae` into the existing folder `out` (layout.py)."""
  out = pathlib.Path(out)
  cfg = model.config
  if vae.cfg.latent_dim != cfg.latent_dim:
    raise ValueError(f"the VAE's latent_dim {vae.cfg.latent_dim} differs from the LLaMo's "
                     f"{cfg.latent_dim}: this VAE is not the one the LLaMo was trained on.")
  if representation not in layout.REPRESENTATIONS:
    raise ValueError(f"representation {representation!r} is not one of {layout.REPRESENTATIONS}.")
  stats = {"feature_mean": feature_mean, "feature_std": feature_std, "latent_mean": latent_mean,
           "latent_std": latent_std}
  dims = {"feature_mean": vae.cfg.input_dim, "feature_std": vae.cfg.input_dim,
          "latent_mean": cfg.latent_dim, "latent_std": cfg.latent_dim}
  for name, value in stats.items():
    if np.shape(value) != (dims[name],):
      raise ValueError(f"{name} has shape {np.shape(value)}, expected ({dims[name]},).")
  config = {
      "format": layout.FORMAT, "format_version": layout.VERSION,
      "llamo": llamo_config_dict(cfg), "vae": vae_config_dict(vae.cfg),
      "motion": {"representation": representation, "fps": float(fps)},
      "skeleton": {"joint_names": list(skeleton.JOINT_NAMES), "parents": list(skeleton.PARENTS),
                   "raw_offsets": skeleton.RAW_OFFSETS.tolist(),
                   "offsets": skeleton.TARGET_OFFSETS.tolist()},
      "tokens": {"bom_id": llamo_lib.bom_id(cfg), "eom_id": llamo_lib.eom_id(cfg),
                 "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id,
                 "t2m_template": sequences.T2M_TEMPLATES[0], "m2t_template": sequences.M2T_TEMPLATES[0]},
      "sampling": {k: sampling[k] for k in ("max_latents", "cfg_scale", "flow_steps", "method",
                                            "temperature", "exit_threshold", "max_caption_tokens")},
      "source": source,
  }
  vae_t = vae_tensors(vae)
  vae_t.update({f"stats.{k}": np.asarray(v, np.float32) for k, v in stats.items()})
  hf_lib.save_safetensors(llamo_tensors(model), out / layout.MODEL_FILE)
  hf_lib.save_safetensors(vae_t, out / layout.VAE_FILE)
  tokenizer.save(out / layout.TOKENIZER_DIR)
  (out / layout.CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
