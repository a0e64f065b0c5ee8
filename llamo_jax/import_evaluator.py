r"""Imports the released PyTorch HumanML3D evaluator (Guo et al., CVPR 2022) as a `guo` evaluator.

  python -m llamo_jax.import_evaluator --source=DIR --glove=DIR --out=OUT [--overwrite]

DIR is the released checkpoints folder of EricGuo5513/text-to-motion for HumanML3D:
  DIR/text_mot_match/model/finest.tar   torch.save'd dict with the state dicts `movement_encoder`,
                                        `text_encoder`, `motion_encoder`
  DIR/Comp_v6_KLD01/meta/mean.npy, std.npy   the evaluator's own feature statistics [263]
--glove=DIR holds the released word vectors our_vab_data.npy [V, 300], our_vab_words.pkl and
our_vab_idx.pkl (word -> row). OUT receives evaluator/{meta.json, mean.npy, std.npy, params.npz};
load it with llamo_jax.tasks.evaluator.load_evaluator(OUT). Sizes are read from the weights.
Needs the torch extra (pip install -e ".[torch]") to read finest.tar. DIR, --glove and OUT may
each be gs:// (any etils.epath): the files are read through epath, and OUT/evaluator/ is written
into a local folder, uploaded beside it and renamed into place only when it is complete.
"""
from __future__ import annotations

import io
import pathlib
import pickle
import sys
from typing import Any, Mapping

import numpy as np
from absl import app
from absl import flags
from etils import epath
from flax import nnx

from llamo_jax.core import paths
from llamo_jax.models import evaluators as models
from llamo_jax.tasks import evaluator as evaluator_lib

CHECKPOINT = pathlib.Path("text_mot_match/model/finest.tar")
STATS = pathlib.Path("Comp_v6_KLD01/meta")
GLOVE_FILES = ("our_vab_data.npy", "our_vab_words.pkl", "our_vab_idx.pkl")


class ConversionError(ValueError):
  """The source folder is not a released HumanML3D evaluator."""


def read_checkpoint(path: paths.PathLike) -> dict[str, dict[str, np.ndarray]]:
  """finest.tar (any epath) -> {module: {name: float32 array}} for the three evaluator modules."""
  path = epath.Path(path)
  try:
    import torch  # pylint: disable=g-import-not-at-top  (the torch extra, needed only to read the .tar)
  except ImportError as e:
    raise ImportError("import_evaluator reads PyTorch checkpoints: pip install -e \".[torch]\"") from e
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: --source must be the released HumanML3D checkpoints folder "
                            f"(holding {CHECKPOINT}).")
  blob = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False)
  out = {}
  for name in ("movement_encoder", "text_encoder", "motion_encoder"):
    if name not in blob:
      raise ConversionError(f"{path} has no {name!r} state dict (it has {sorted(blob)}); is it the evaluator's "
                         "finest.tar (text_mot_match)?")
    out[name] = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in blob[name].items()}
  return out


def read_glove(folder: paths.PathLike) -> tuple[list[str], np.ndarray]:
  """(words in row order, vectors [V, 300]) of the released GloVe subset (any epath)."""
  folder = epath.Path(folder)
  missing = [f for f in GLOVE_FILES if not (folder / f).is_file()]
  if missing:
    raise FileNotFoundError(f"--glove={folder} lacks {missing}; point it at the released glove/ folder.")
  vectors = paths.load_npy(folder / GLOVE_FILES[0]).astype(np.float32)
  words = list(pickle.loads((folder / GLOVE_FILES[1]).read_bytes()))
  index = dict(pickle.loads((folder / GLOVE_FILES[2]).read_bytes()))
  vocabulary = [""] * len(vectors)
  for w in words:
    if not 0 <= index[w] < len(vectors):
      raise ConversionError(f"{folder}: word {w!r} has row {index[w]}, outside the {len(vectors)} vectors.")
    vocabulary[index[w]] = w
  missing = [w for w in (evaluator_lib.SOS, evaluator_lib.EOS, evaluator_lib.UNK) if w not in index]
  if missing:
    raise ConversionError(f"{folder}: the vocabulary lacks {missing}, which the evaluator's text input needs.")
  return vocabulary, vectors


def _linear(sd: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  return {"kernel": sd[f"{prefix}.weight"].T, "bias": sd[f"{prefix}.bias"]}


def _bigru_co(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
  gru = lambda suffix: {"kernel_i": sd[f"gru.weight_ih_l0{suffix}"].T, "kernel_h": sd[f"gru.weight_hh_l0{suffix}"].T,
                        "bias_i": sd[f"gru.bias_ih_l0{suffix}"], "bias_h": sd[f"gru.bias_hh_l0{suffix}"]}
  return {"input_emb": _linear(sd, "input_emb"), "forward_gru": gru(""), "backward_gru": gru("_reverse"),
          "initial_state": sd["hidden"][:, 0], "head_in": _linear(sd, "output_net.0"),
          "head_norm": {"scale": sd["output_net.1.weight"], "bias": sd["output_net.1.bias"]},
          "head_out": _linear(sd, "output_net.3")}


def convert(state: Mapping[str, Mapping[str, np.ndarray]], glove_vectors: np.ndarray
            ) -> tuple[models.GuoConfig, dict[str, Any]]:
  """The released state dicts -> (GuoConfig, our param tree as nested dicts)."""
  mov, txt, mot = state["movement_encoder"], state["text_encoder"], state["motion_encoder"]
  try:
    config = models.GuoConfig(
        input_dim=mov["main.0.weight"].shape[1], vocab_size=glove_vectors.shape[0],
        word_dim=txt["pos_emb.weight"].shape[0], movement_hidden=mov["main.0.weight"].shape[0],
        movement_latent=mov["main.3.weight"].shape[0], text_hidden=txt["input_emb.weight"].shape[0],
        motion_hidden=mot["input_emb.weight"].shape[0], embed_dim=txt["output_net.3.weight"].shape[0],
        train_word_table=False)
    if txt["pos_emb.weight"].shape[1] != models.NUM_POS:
      raise ConversionError(f"text_encoder.pos_emb reads {txt['pos_emb.weight'].shape[1]} POS slots, "
                         f"not the released {models.NUM_POS}.")
    if glove_vectors.shape[1] != config.word_dim:
      raise ConversionError(f"The word vectors are {glove_vectors.shape[1]}-d, the text encoder reads {config.word_dim}.")
    conv = lambda p: {"kernel": mov[f"{p}.weight"].transpose(2, 1, 0), "bias": mov[f"{p}.bias"]}
    params = {
        "word_table": glove_vectors,
        "movement_encoder": {"conv1": conv("main.0"), "conv2": conv("main.3"), "out": _linear(mov, "out_net")},
        "motion_encoder": _bigru_co(mot),
        "pos_emb": _linear(txt, "pos_emb"),
        "text_encoder": _bigru_co(txt),
    }
  except KeyError as e:
    raise ConversionError(f"finest.tar lacks the weight {e}: it is not the released evaluator layout.") from e
  return config, params


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = np.ascontiguousarray(v, np.float32)
  return out


def import_evaluator(source: paths.PathLike, glove: paths.PathLike, out: paths.PathLike, *,
                     overwrite: bool = False) -> epath.Path:
  """Converts the released evaluator in `source` (+ GloVe in `glove`) into the folder `out` (each any epath)."""
  source, glove, out = epath.Path(source), epath.Path(glove), paths.absolute(out)
  final = out / evaluator_lib.META_DIR
  if final.exists() and not overwrite:
    raise FileExistsError(f"{final} exists; pass --overwrite to replace it.")
  stats = [source / STATS / "mean.npy", source / STATS / "std.npy"]
  for f in stats:
    if not f.is_file():
      raise FileNotFoundError(f"{f} not found: the evaluator's feature statistics live in --source/{STATS}.")
  mean, std = (paths.load_npy(f).astype(np.float32) for f in stats)
  state = read_checkpoint(source / CHECKPOINT)
  vocabulary, vectors = read_glove(glove)
  config, params = convert(state, vectors)
  if mean.shape != (config.input_dim + 4,):
    raise ConversionError(f"{stats[0]} has shape {mean.shape}; the evaluator reads {config.input_dim} dims "
                       "plus 4 foot contacts (hml263).")
  out.mkdir(parents=True, exist_ok=True)
  tmp = paths.temp_sibling(final)
  try:
    with paths.staged_dir(tmp) as local:  # tmp itself when local, else uploaded to tmp on success
      evaluator_lib.write_meta(local, "guo", "hml263", config.to_dict(), vocabulary, evaluator_lib.GUO_MAX_WORDS,
                               mean, std)
      np.savez(local / "params.npz", **_flatten(params))
      # Reading it back into the model checks every name and shape.
      evaluator_lib.load_params(models.GuoEvaluator(config, rngs=nnx.Rngs(0)), local / "params.npz")
    if final.exists():
      final.rmtree()
    tmp.rename(final)
  finally:
    if tmp.exists():
      tmp.rmtree()
  return out


def define_flags() -> None:
  flags.DEFINE_string("source", None, "Released HumanML3D checkpoints folder (text_mot_match/, Comp_v6_KLD01/).",
                      required=True)
  flags.DEFINE_string("glove", None, "Folder with our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl.",
                      required=True)
  flags.DEFINE_string("out", None, "Output evaluator folder (for load_evaluator / --evaluator=).", required=True)
  flags.DEFINE_bool("overwrite", False, "Replace an evaluator already in --out.")


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    out = import_evaluator(f.source, f.glove, f.out, overwrite=f.overwrite)
  except (FileNotFoundError, FileExistsError, ImportError, ConversionError) as e:
    sys.exit(f"import_evaluator: error: {e}")
  print(f"Imported the HumanML3D evaluator {f.source} -> {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
