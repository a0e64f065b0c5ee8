"""Pretrained model directories: a Llama's config, params and tokenizer in one folder.

Layout:
  config.json   {"format": "llamo_jax.pretrained", "format_version": 1,
                 "llama": LlamaConfig.to_dict(), "source": where it came from}
  params/       orbax checkpoint of the param pure dict (nnx.state(model, nnx.Param))
  tokenizer/    a saved `llamo_jax.data.tokenizer.Tokenizer`

Writes go to a temporary sibling folder that is renamed into place at the end,
so a failed write never leaves a half-written directory or destroys an old one.
These are single-process tools (import, export, scoring, initialising a run). Every path
goes through epath, so a pretrained dir may be gs:// (orbax reads and writes it natively).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

from etils import epath
from flax import nnx
from flax import traverse_util
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from llamo_jax.core import paths
from llamo_jax.core import sharding as sharding_lib
from llamo_jax.convert import hf as hf_lib
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models import mot as mot_lib
from llamo_jax.models.llama import Llama, LlamaConfig

FORMAT = "llamo_jax.pretrained"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"

# Fields that fix the parameter values; the others (dtype, param_dtype,
# max_seq_len, scan_layers, remat_policy) are run-time choices a loader may change.
ARCHITECTURE_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                       "ffn_dim", "norm_eps", "rope_theta", "rope_scaling", "tie_embeddings")


class PretrainedDirError(ValueError):
  """A directory that is not (or does not fit) a llamo_jax pretrained model."""


def is_pretrained_dir(directory: str | epath.Path) -> bool:
  directory = epath.Path(directory)
  return (directory / CONFIG_FILE).is_file() and (directory / PARAMS_DIR).is_dir()


# ---------------------------------------------------------------------------
# Saving.
# ---------------------------------------------------------------------------
def abstract_params(cfg: LlamaConfig) -> dict[str, Any]:
  """The param pure dict of `Llama(cfg)` as jax.ShapeDtypeStructs (nothing allocated)."""
  model = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
  return nnx.state(model, nnx.Param).to_pure_dict()


def check_params(params: Mapping[str, Any], cfg: LlamaConfig, *, what: str = "params") -> None:
  """Raises PretrainedDirError unless `params` has exactly Llama(cfg)'s paths and shapes."""
  want = _flat_shapes(abstract_params(cfg))
  got = _flat_shapes(params)
  problems = [f"missing {k}" for k in want if k not in got]
  problems += [f"unexpected {k}" for k in got if k not in want]
  problems += [f"{k}: shape {got[k]}, expected {want[k]}" for k in want
               if k in got and got[k] != want[k]]
  if problems:
    raise PretrainedDirError(f"{what} do not fit the Llama config: " + "; ".join(problems[:8]))


def save_pretrained(directory: str | epath.Path, cfg: LlamaConfig, model: nnx.Module,
                    tokenizer: Tokenizer, *, source: str | None = None,
                    overwrite: bool = False) -> epath.Path:
  """Writes `model`'s params (nnx.Param state), `cfg` and `tokenizer` to `directory`."""
  params = nnx.state(model, nnx.Param).to_pure_dict()
  return write_pretrained(directory, cfg, params, tokenizer, source=source, overwrite=overwrite)


def write_pretrained(directory: str | epath.Path, cfg: LlamaConfig, params: Mapping[str, Any],
                     tokenizer: Tokenizer, *, source: str | None = None,
                     overwrite: bool = False) -> epath.Path:
  """Writes a param pure dict (numpy or jax arrays), `cfg` and `tokenizer` to `directory`.

  Refuses a directory that already holds a checkpoint unless `overwrite`, and
  any other non-empty directory always. Returns the absolute directory path.
  """
  directory = paths.absolute(directory)
  check_params(params, cfg)
  if tokenizer.vocab_size > cfg.vocab_size:
    raise PretrainedDirError(f"The tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
                             f"only {cfg.vocab_size}.")
  if directory.exists():
    if not directory.is_dir():
      raise PretrainedDirError(f"{directory} exists and is not a directory.")
    if is_pretrained_dir(directory):
      if not overwrite:
        raise PretrainedDirError(f"{directory} already contains a pretrained checkpoint; pass "
                                 "--overwrite (overwrite=True) to replace it, or choose another --out.")
    elif any(directory.iterdir()):
      raise PretrainedDirError(f"{directory} exists and is not empty (and not a checkpoint); "
                               "choose a new or empty --out directory.")
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = paths.temp_sibling(directory)
  try:
    tmp.mkdir()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "llama": cfg.to_dict(),
            "source": source}
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    tokenizer.save(tmp / TOKENIZER_DIR)
    with jax.default_device(hf_lib.host_device()):
      arrays = jax.tree.map(jnp.asarray, dict(params))
      checkpointer = ocp.StandardCheckpointer()
      checkpointer.save(tmp / PARAMS_DIR, arrays)
      checkpointer.wait_until_finished()
      checkpointer.close()
    _replace_dir(tmp, directory)
  finally:
    if tmp.exists():
      tmp.rmtree()
  return directory


def _replace_dir(new: epath.Path, directory: epath.Path) -> None:
  """Renames `new` to `directory`; an old `directory` is removed only after the rename."""
  old = None
  if directory.exists():
    old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
    directory.rename(old)
  try:
    new.rename(directory)
  except BaseException:
    if old is not None:
      old.rename(directory)
    raise
  if old is not None:
    old.rmtree()


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------
def read_config(directory: str | epath.Path) -> LlamaConfig:
  """The LlamaConfig stored in a pretrained directory."""
  directory = epath.Path(directory)
  if not is_pretrained_dir(directory):
    raise PretrainedDirError(
        f"{directory} is not a llamo_jax pretrained directory (needs {CONFIG_FILE} and {PARAMS_DIR}/); "
        "create one with `python -m llamo_jax.import_llm --source=... --out=...`.")
  meta = json.loads((directory / CONFIG_FILE).read_text())
  if meta.get("format") != FORMAT:
    raise PretrainedDirError(f"{directory / CONFIG_FILE} is not a llamo_jax pretrained config "
                             f"(format={meta.get('format')!r}).")
  if meta.get("format_version") != FORMAT_VERSION:
    raise PretrainedDirError(f"{directory} has format_version {meta.get('format_version')}; this "
                             f"code reads version {FORMAT_VERSION}.")
  return LlamaConfig.from_dict(meta["llama"])


def resolve_config(stored: LlamaConfig, requested: LlamaConfig | None) -> LlamaConfig:
  """`requested` if its architecture fields match `stored`; `stored` if None."""
  if requested is None:
    return stored
  diff = [f"{f}: checkpoint {getattr(stored, f)!r} vs requested {getattr(requested, f)!r}"
          for f in ARCHITECTURE_FIELDS if getattr(stored, f) != getattr(requested, f)]
  if diff:
    raise PretrainedDirError("The checkpoint's config does not match the requested one: "
                             + "; ".join(diff) + ".")
  return requested


def restore_params(directory: str | epath.Path, target: Mapping[str, Any]) -> dict[str, Any]:
  """Restores the params of a pretrained dir into `target`'s shapes, dtypes and shardings.

  Args:
    directory: a pretrained directory.
    target: a param pure dict of jax.ShapeDtypeStruct (with `.sharding`).
  Returns:
    The param pure dict of jax.Arrays, placed as `target` says.
  """
  path = paths.absolute(directory) / PARAMS_DIR  # orbax needs absolute paths
  checkpointer = ocp.StandardCheckpointer()
  stored = checkpointer.metadata(path)
  stored_tree = getattr(stored, "item_metadata", stored)
  stored_shapes = _flat_shapes(stored_tree)
  want = _flat_shapes(target)
  if stored_shapes != want:
    problems = [f"missing {k}" for k in want if k not in stored_shapes]
    problems += [f"unexpected {k}" for k in stored_shapes if k not in want]
    problems += [f"{k}: stored {stored_shapes[k]}, expected {want[k]}" for k in want
                 if k in stored_shapes and stored_shapes[k] != want[k]]
    raise PretrainedDirError(f"{path} does not fit the model: " + "; ".join(problems[:8]))
  restored = checkpointer.restore(path, dict(target))
  checkpointer.close()
  return restored


def load_pretrained(directory: str | epath.Path, mesh: Mesh | None = None,
                    rules: sharding_lib.Rules | None = None, *, config: LlamaConfig | None = None
                    ) -> tuple[LlamaConfig, Llama, Tokenizer]:
  """Loads (cfg, model, tokenizer) from a pretrained directory.

  With `mesh`, every param is restored directly into its NamedSharding from
  the logical axis `rules` (default sharding.DEFAULT_RULES); without, onto this
  process's first device (so each host of a multi-host job may load its own copy). `config` may change run-time fields (dtype, param_dtype,
  scan_layers, remat_policy, max_seq_len); its architecture must match.
  """
  cfg = resolve_config(read_config(directory), config)
  tokenizer = Tokenizer.load(epath.Path(directory) / TOKENIZER_DIR)
  abstract_model = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
  graphdef, abstract_state = nnx.split(abstract_model)
  param_state = nnx.state(abstract_model, nnx.Param)
  if mesh is not None:
    shardings = sharding_lib.state_shardings(
        param_state, mesh, sharding_lib.DEFAULT_RULES if rules is None else rules).to_pure_dict()
  else:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shardings = jax.tree.map(lambda _: device, param_state.to_pure_dict())
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        param_state.to_pure_dict(), shardings)
  params = restore_params(directory, target)
  abstract_state.replace_by_pure_dict(params)
  return cfg, nnx.merge(graphdef, abstract_state), tokenizer


def model_from_params(cfg: LlamaConfig, params: Mapping[str, Any]) -> Llama:
  """A Llama(cfg) holding `params` (a param pure dict of numpy/jax arrays) on the default device."""
  check_params(params, cfg)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0))))
  state.replace_by_pure_dict(jax.tree.map(lambda x: jnp.asarray(x, cfg.weight_dtype), dict(params)))
  return nnx.merge(graphdef, state)


def _flat_shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  flat = jax.tree_util.tree_flatten_with_path(dict(tree))[0]
  return {jax.tree_util.keystr(path, simple=True, separator="."): tuple(leaf.shape)
          for path, leaf in flat}


def load_base(model: llamo_lib.LLaMo, pretrained_dir: str) -> None:
  """Loads an imported Llama (`python -m llamo_jax.import_llm`) into the text
  expert, embeddings, final norm and LM head, then copies text -> motion expert."""
  cfg = resolve_config(read_config(pretrained_dir), model.cfg)
  current = traverse_util.flatten_dict(nnx.state(model, nnx.Param).to_pure_dict())
  # Restore straight into the model's shardings (works on any mesh, multi-host included).
  target = {k: jax.ShapeDtypeStruct(v.shape, current[k].dtype, sharding=current[k].sharding)
            for k, v in traverse_util.flatten_dict(abstract_params(cfg)).items()}
  params = restore_params(pretrained_dir, traverse_util.unflatten_dict(target))
  nnx.update(model, params)
  mot_lib.init_motion_from_text(model)


__all__ = ["PretrainedDirError", "abstract_params", "check_params", "is_pretrained_dir",
           "load_base", "load_pretrained", "model_from_params", "read_config", "resolve_config", "restore_params",
           "save_pretrained", "write_pretrained"]

