r"""Imports a pretrained Llama (HF folder or GGUF file) as a llamo_jax pretrained dir.

  python -m llamo_jax.import_llm --source=PATH --out=DIR [--param_dtype=float32] [--overwrite]

PATH is either an HF model folder (config.json, model.safetensors or a sharded
model.safetensors.index.json, and tokenizer.json or tokenizer.model) or a
llama.cpp `.gguf` file (dequantized to float32). DIR receives config.json,
params/ (orbax) and tokenizer/ (see llamo_jax/convert/pretrained.py); it is written
to a temporary folder and renamed at the end, and an existing checkpoint there
is only replaced with --overwrite. PATH and DIR may be gs:// (any etils.epath): a
remote PATH is first downloaded into a local temporary folder (the GGUF and
safetensors readers map local files), and DIR is written like a local one.
"""
from __future__ import annotations

import contextlib
import pathlib
import sys
import tempfile
from typing import Any, Iterator

from absl import app
from absl import flags
from absl import logging
from etils import epath

from llamo_jax.core import paths
from llamo_jax.convert import pretrained
from llamo_jax.convert import gguf as gguf_lib
from llamo_jax.convert import hf as hf_lib
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models.llama import LlamaConfig

# Suffixes of the HF folder files `read_source` reads (config, safetensors, tokenizer): the
# files a remote folder is downloaded with (its *.bin, *.pt, *.onnx copies stay behind).
HF_SUFFIXES = (".json", ".safetensors", ".model", ".txt")


@contextlib.contextmanager
def local_source(source: paths.PathLike) -> Iterator[pathlib.Path]:
  """`source` as a local path: itself when local, else a download (the .gguf file, or the HF
  folder's top-level HF_SUFFIXES files) into a temporary folder removed afterwards."""
  if paths.is_local(source):
    yield pathlib.Path(source)
    return
  remote = epath.Path(source)
  if remote.is_file():
    files = [remote]
  elif remote.is_dir():
    files = [f for f in remote.iterdir() if f.suffix in HF_SUFFIXES and f.is_file()]
  else:
    raise FileNotFoundError(f"--source={source} does not exist: point it at an HF model folder or a "
                            ".gguf file (gs:// paths are read through etils.epath).")
  with tempfile.TemporaryDirectory(prefix="llamo_import_") as tmp:
    local = pathlib.Path(tmp) / remote.name
    if remote.is_dir():
      local.mkdir()
    logging.info("Downloading %d file(s) of %s to %s", len(files), source, local)
    for f in files:
      paths.copy_file(f, (local if remote.is_dir() else local.parent) / f.name)
    yield local


def read_source(source: paths.PathLike, **overrides: Any
                ) -> tuple[LlamaConfig, dict[str, Any], Tokenizer]:
  """(config, param pure dict, tokenizer) of an HF folder or a GGUF file.

  `overrides` set LlamaConfig run-time fields (e.g. param_dtype). A remote `source` is read
  from a local download (`local_source`).
  """
  if not paths.is_local(source):
    with local_source(source) as local:
      try:
        return read_source(local, **overrides)
      except (FileNotFoundError, hf_lib.ConversionError) as e:  # name the remote file, not the download
        raise type(e)(str(e).replace(str(local), str(source).rstrip("/"))) from e
  source = pathlib.Path(source)
  if source.is_file() and source.suffix == ".gguf":
    return gguf_lib.read_gguf(source, **overrides)
  if not source.is_dir():
    raise FileNotFoundError(f"--source={source} is neither an HF model folder nor a .gguf file.")
  cfg = hf_lib.llama_config_from_hf(hf_lib.read_hf_config(source), **overrides)
  try:
    tokenizer = Tokenizer.load(source)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{source} has no tokenizer (tokenizer.json or tokenizer.model); copy "
                            "the model's tokenizer files into it.") from e
  params = hf_lib.params_from_hf(hf_lib.load_safetensors(source), cfg, source=str(source))
  return cfg, params, tokenizer


def import_llm(source: paths.PathLike, out: paths.PathLike, *,
               param_dtype: str = "float32", overwrite: bool = False) -> epath.Path:
  """Converts `source` and writes the pretrained dir `out` (each any epath); returns its path."""
  cfg, params, tokenizer = read_source(source, param_dtype=param_dtype)
  return pretrained.write_pretrained(out, cfg, params, tokenizer, source=str(source),
                                     overwrite=overwrite)


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share names)."""
  flags.DEFINE_string("source", None, "HF model folder or .gguf file.", required=True)
  flags.DEFINE_string("out", None, "Output pretrained directory.", required=True)
  flags.DEFINE_enum("param_dtype", "float32", ["float32", "bfloat16"],
                    "Storage dtype of the imported params.")
  flags.DEFINE_bool("overwrite", False, "Replace a checkpoint already in --out.")


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    out = import_llm(f.source, f.out, param_dtype=f.param_dtype, overwrite=f.overwrite)
  except (FileNotFoundError, hf_lib.ConversionError, pretrained.PretrainedDirError) as e:
    sys.exit(f"import_llm: error: {e}")
  logging.info("Wrote %s", out)
  print(f"Imported {f.source} -> {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
