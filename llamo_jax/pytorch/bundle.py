"""An exported LLaMo folder loaded in PyTorch: model + VAE + tokenizer + statistics.

    bundle = load("exported/")
    out = bundle.text_to_motion(["a person jumps."], seed=0)   # features, joints per prompt
    text = bundle.caption(features)                           # denormalised features [T, dim]

Layout of the folder: layout.py.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from llamo_jax.pytorch import layout
from llamo_jax.pytorch import model as model_lib
from llamo_jax.pytorch import motion as motion_lib
from llamo_jax.pytorch import sampling
from llamo_jax.pytorch import tokenizer as tokenizer_lib
from llamo_jax.pytorch import vae as vae_lib
from llamo_jax.pytorch._torch import safetensors_torch
from llamo_jax.pytorch._torch import torch


def _load_state(module: torch.nn.Module, path: pathlib.Path, skip_prefix: str | None = None) -> dict:
  """Loads safetensors `path` into `module` (strict: names and shapes); returns the skipped tensors."""
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: re-export with python -m llamo_jax.export --format=pytorch.")
  tensors = safetensors_torch.load_file(str(path))
  skipped = {k: v for k, v in tensors.items() if skip_prefix and k.startswith(skip_prefix)}
  tensors = {k: v.float() for k, v in tensors.items() if k not in skipped}
  expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
  missing = sorted(set(expected) - set(tensors))
  unexpected = sorted(set(tensors) - set(expected))
  wrong = [f"{k} {tuple(tensors[k].shape)} (expected {expected[k]})" for k in expected
           if k in tensors and tuple(tensors[k].shape) != expected[k]]
  if missing or unexpected or wrong:
    raise ValueError(f"{path} does not match its config.json: missing {missing[:5]}, unexpected "
                     f"{unexpected[:5]}, misshapen {wrong[:5]}.")
  module.load_state_dict(tensors)
  return skipped


@dataclasses.dataclass
class Bundle:
  """The loaded folder. Stats are numpy float32; feature stats [Cin], latent stats [C]."""
  config: dict[str, Any]
  model: model_lib.LLaMo
  vae: vae_lib.MotionVAE
  tokenizer: tokenizer_lib.Tokenizer
  stats: dict[str, np.ndarray]

  @property
  def representation(self) -> str:
    return self.config["motion"]["representation"]

  @property
  def fps(self) -> float:
    return float(self.config["motion"]["fps"])

  def t2m_prompt(self, text: str) -> list[int]:
    """`[BOS] instruction(text) [BOM]` (data.sequences.t2m_prompt, template 0)."""
    tokens = self.config["tokens"]
    return self.tokenizer.encode(tokens["t2m_template"].format(caption=text.strip())) + [tokens["bom_id"]]

  def m2t_prompt(self) -> list[int]:
    tokens = self.config["tokens"]
    return self.tokenizer.encode(tokens["m2t_template"]) + [tokens["bom_id"]]

  @torch.no_grad()
  def decode_latents(self, latents: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
    """Normalised latents [B,K,C] + lengths -> B denormalised feature arrays [4*len_b, Cin]."""
    s = self.stats
    z = torch.as_tensor(np.asarray(latents, np.float32)) * torch.from_numpy(s["latent_std"]) \
        + torch.from_numpy(s["latent_mean"])
    frames = self.vae.decode(z).numpy()
    return [frames[i, :vae_lib.FRAMES_PER_LATENT * int(n)] * s["feature_std"] + s["feature_mean"]
            for i, n in enumerate(lengths)]

  def text_to_motion(self, prompts: Sequence[str], *, noise: np.ndarray | None = None, seed: int = 0,
                     **overrides: Any) -> list[dict[str, np.ndarray]]:
    """One motion per prompt with config.json's sampling settings (non-None overrides win).

    Returns per prompt {"features": [T, dim] denormalised, "joints": [T,22,3], "latents": int}.
    """
    s = dict(self.config["sampling"], **{k: v for k, v in overrides.items() if v is not None})
    latents, lengths = sampling.generate_motion(
        self.model, [self.t2m_prompt(p) for p in prompts], max_latents=int(s["max_latents"]),
        cfg_scale=s["cfg_scale"], flow_steps=int(s["flow_steps"]), method=s["method"],
        temperature=float(s["temperature"]), exit_threshold=float(s["exit_threshold"]),
        noise=noise, seed=seed)
    features = self.decode_latents(latents, lengths.tolist())
    return [{"features": f, "joints": motion_lib.to_joints(f, self.representation),
             "latents": int(n)} for f, n in zip(features, lengths.tolist())]

  def write_bvh(self, path: str | pathlib.Path, joints: np.ndarray) -> None:
    """joints [T,22,3] -> a BVH of the exported skeleton at the export's frame rate."""
    motion_lib.write_bvh(path, joints, fps=self.fps, skeleton=self.config["skeleton"])

  @torch.no_grad()
  def caption(self, features: np.ndarray, *, max_new_tokens: int | None = None) -> str:
    """A greedy caption of denormalised features [T, dim] of the bundle's representation."""
    s = self.stats
    f = np.asarray(features, np.float32)
    if f.ndim != 2 or f.shape[1] != s["feature_mean"].shape[0]:
      raise ValueError(f"features must be [T, {s['feature_mean'].shape[0]}] ({self.representation}), "
                       f"got shape {f.shape}.")
    z = self.vae.encode(torch.from_numpy((f - s["feature_mean"]) / s["feature_std"])[None])
    z = (z - torch.from_numpy(s["latent_mean"])) / torch.from_numpy(s["latent_std"])
    n = max_new_tokens or int(self.config["sampling"]["max_caption_tokens"])
    ids = sampling.caption_motion(self.model, z, [z.shape[1]], self.m2t_prompt(),
                                  eos_id=self.config["tokens"]["eos_id"], max_new_tokens=n)
    return self.tokenizer.decode(ids[0])


def read_config(directory: str | pathlib.Path) -> dict[str, Any]:
  """config.json of an exported folder, checked to be this format."""
  path = pathlib.Path(directory) / layout.CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: {directory} is not an exported LLaMo folder "
                            "(python -m llamo_jax.export --checkpoint=LLAMO_RUN --format=pytorch --out=DIR).")
  config = json.loads(path.read_text())
  if config.get("format") != layout.FORMAT or config.get("format_version") != layout.VERSION:
    raise ValueError(f"{path} is not a {layout.FORMAT} v{layout.VERSION} export (got format "
                     f"{config.get('format')!r} v{config.get('format_version')}); an HF Llama folder "
                     "(--format=hf) holds the text model only.")
  return config


def load(directory: str | pathlib.Path) -> Bundle:
  """Loads an exported folder (eval mode, float32, CPU)."""
  directory = pathlib.Path(directory)
  config = read_config(directory)
  model = model_lib.LLaMo(model_lib.LLaMoConfig.from_dict(config["llamo"]))
  _load_state(model, directory / layout.MODEL_FILE)
  vae = vae_lib.MotionVAE(vae_lib.VAEConfig.from_dict(config["vae"]))
  stats = _load_state(vae, directory / layout.VAE_FILE, skip_prefix="stats.")
  stats = {k: stats[f"stats.{k}"].float().numpy() for k in layout.STATS}
  tokenizer = tokenizer_lib.Tokenizer(directory / layout.TOKENIZER_DIR)
  return Bundle(config, model.eval(), vae.eval(), tokenizer, stats)
