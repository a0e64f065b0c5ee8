r"""Exports a llamo_jax model to another framework's format.

  python -m llamo_jax.export --checkpoint=PRETRAINED_DIR --format=hf --out=OUT
  python -m llamo_jax.export --checkpoint=LLAMO_RUN --format=pytorch --out=OUT

Formats:
  hf       the text model of a pretrained dir (python -m llamo_jax.import_llm, or an LM
           run's export) as a transformers LlamaForCausalLM folder: config.json
           (transformers 5, rope in `rope_parameters`), generation_config.json,
           model.safetensors and the tokenizer files (tokenizer.json or tokenizer.model +
           tokenizer_config.json), loadable with AutoModelForCausalLM and
           AutoTokenizer.from_pretrained(OUT).
  pytorch  a whole LLaMo training run (its latest checkpoint): text and motion experts,
           [BOM]/[EOM], adapter, flow head, exit head, its motion VAE (encoder and
           decoder), the latent and feature statistics, the tokenizer and the sampling
           settings, as llamo_jax/pytorch/layout.py describes. `llamo_jax.pytorch.bundle.load(OUT)`
           runs it without JAX; `python -m llamo_jax.torch_generate --model=OUT` samples
           and captions from the command line.

CHECKPOINT and OUT may be local or gs:// (any etils.epath path). OUT must not exist or be
empty; it is written to a temporary folder beside it (for a gs:// OUT, written locally and
uploaded there) and renamed at the end, so a failed export leaves nothing at OUT.
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax

from llamo_jax import tasks
from llamo_jax.convert import pretrained
from llamo_jax.convert import hf as hf_lib
from llamo_jax.convert import torch_export
from llamo_jax.core import paths
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models.llama import LlamaConfig
from llamo_jax.training import runs

def _write_hf_tokenizer(tokenizer: Tokenizer, cfg: LlamaConfig, out: pathlib.Path) -> None:
  """tokenizer.json / tokenizer.model + tokenizer_config.json for AutoTokenizer."""
  token = lambda i: None if i is None else tokenizer.id_to_token(i)
  tok_cfg = {"bos_token": token(tokenizer.bos_id), "eos_token": token(tokenizer.eos_id),
             "pad_token": token(tokenizer.pad_id), "model_max_length": cfg.max_seq_len}
  if tokenizer.backend == "tokenizers":
    tokenizer.backend_model.save(str(out / "tokenizer.json"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
  else:
    sp = tokenizer.backend_model
    (out / "tokenizer.model").write_bytes(sp.serialized_model_proto())
    tok_cfg.update(tokenizer_class="LlamaTokenizer", unk_token=token(sp.unk_id()),
                   add_bos_token=tokenizer.bos_id is not None, add_eos_token=False)
    logging.warning("Exporting a SentencePiece tokenizer: transformers' LlamaTokenizer applies "
                    "none of the model's normalizer rules (e.g. whitespace collapsing), so text "
                    "with repeated spaces or newlines may tokenize differently there.")
  (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")


def export_hf(checkpoint: paths.PathLike, out: pathlib.Path) -> None:
  """Writes the pretrained dir `checkpoint` as a transformers LlamaForCausalLM folder into the local `out`."""
  cfg = pretrained.read_config(checkpoint)
  tokenizer = Tokenizer.load(epath.Path(checkpoint) / pretrained.TOKENIZER_DIR)
  cpu = jax.sharding.SingleDeviceSharding(hf_lib.host_device())
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu),
                        pretrained.abstract_params(cfg))
  params = pretrained.restore_params(checkpoint, target)
  hf_lib.save_safetensors(hf_lib.params_to_hf(params, cfg), out / hf_lib.SINGLE_FILE)
  ids = dict(bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
  hf_cfg = hf_lib.hf_config_from_llama(cfg, **ids)
  (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
  generation = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
                "pad_token_id": tokenizer.pad_id}
  (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
  _write_hf_tokenizer(tokenizer, cfg, out)


def _check_llamo_run(checkpoint: paths.PathLike):
  """The run config of a LLaMo run whose VAE run exists; one clear error otherwise."""
  config = runs.load_run_config(checkpoint, task="llamo")
  vae_workdir = config.get("vae", {}).get("workdir", "")
  if not vae_workdir or not (epath.Path(vae_workdir) / "config.json").is_file():
    raise FileNotFoundError(f"{checkpoint} was trained on the motion VAE run config.vae.workdir="
                            f"{vae_workdir!r}, which is not a training workdir (no config.json); "
                            "the export needs that VAE: restore it there.")
  runs.load_run_config(vae_workdir, task="motion_vae")
  return config


def export_pytorch(checkpoint: paths.PathLike, out: pathlib.Path) -> None:
  """Writes the latest checkpoint of the LLaMo run `checkpoint` (and its VAE) for llamo_jax.pytorch
  into the local `out`."""
  config = _check_llamo_run(checkpoint)
  task, model, step = tasks.restore_for_eval(config, checkpoint)
  model = llamo_lib.for_inference(model)
  rep = task.representation
  torch_export.write_export(
      out, model, task.vae, task.tokenizer, representation=rep.name, fps=rep.fps,
      feature_mean=task.vae_task.mean, feature_std=task.vae_task.std, latent_mean=task.latent_mean,
      latent_std=task.latent_std, sampling=config.sampling.to_dict(),
      source=f"{paths.absolute(checkpoint)} step {step}")


# Each writes the export into a local folder (safetensors and tokenizers write local files).
FORMATS: dict[str, Callable[[paths.PathLike, pathlib.Path], None]] = {
    "hf": export_hf, "pytorch": export_pytorch}
# Checks that the source is what the format reads, before anything is written.
SOURCE_CHECKS: dict[str, Callable[[paths.PathLike], object]] = {
    "hf": pretrained.read_config, "pytorch": _check_llamo_run}


def export(checkpoint: paths.PathLike, fmt: str, out: paths.PathLike) -> epath.Path:
  """Exports `checkpoint` in format `fmt` (a key of FORMATS) to the new directory `out` (any epath)."""
  if fmt not in FORMATS:
    raise ValueError(f"Unknown export format {fmt!r}; known formats: {sorted(FORMATS)}.")
  SOURCE_CHECKS[fmt](checkpoint)  # fail early on a source of the wrong kind
  out = paths.absolute(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise FileExistsError(f"--out={out} exists and is not an empty directory; choose a new one.")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = paths.temp_sibling(out)
  try:
    with paths.staged_dir(tmp) as local:  # tmp itself when local, else uploaded to tmp on success
      FORMATS[fmt](checkpoint, pathlib.Path(local))
    if out.exists():
      out.rmdir()  # empty, checked above
    tmp.rename(out)
  finally:
    if tmp.exists():
      tmp.rmtree()
  return out


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share names)."""
  flags.DEFINE_string("checkpoint", None, "hf: a llamo_jax pretrained directory; pytorch: a LLaMo "
                      "training workdir (its latest checkpoint).", required=True)
  flags.DEFINE_string("format", "hf", f"Export format; one of: {', '.join(sorted(FORMATS))}.")
  flags.DEFINE_string("out", None, "Output directory (must not exist or be empty).", required=True)


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    out = export(f.checkpoint, f.format, f.out)
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    sys.exit(f"export: error: {e}")
  print(f"Exported {f.checkpoint} ({f.format}) -> {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
