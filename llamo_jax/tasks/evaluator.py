"""Text-motion evaluators: training (`EvaluatorTask`) and use (`load_evaluator`) (docs/design.md, Evaluators).

  python -m llamo_jax.train --config=configs/evaluator.py:guo --workdir=W
  evaluator = load_evaluator(W)          # or an import_evaluator output folder
  evaluator.encode_texts(["a person walks forward"])    -> [N, E]
  evaluator.encode_motions([features_T_by_263, ...])     -> [N, E]  (raw, unnormalised)

Config keys: evaluator ("guo" | "tmr"), model (GuoConfig / TMRConfig fields; input_dim,
vocab_size and text_feature_dim are set here), loss (guo: margin; tmr: temperature,
duplicate_threshold), text (max_words, min_count, llm), data (the motion pipeline's keys,
llamo_jax/data/pipeline.py), eval_split, eval_clips.

Text: captions are tagged into HumanML3D's `word/POS` tokens (lemmas; `tag_caption`): words
of the synthetic grammar by its lexicon, other words by closed-class lists and suffix rules
(no statistical tagger is available offline). A text that already is `word/POS word/POS ...`
(HumanML3D's texts/ID.txt second field) is used as given, which is how the released evaluator
reproduces exactly. guo reads [sos] + at most 20 tokens + [eos], padded with unk (22 tokens),
the released WordVectorizer's POS one-hot with its VIP word lists overriding the tag; unknown
words map to unk with POS OTHER. Our trained guo learns its 300-d word table over the training
captions' lemmas (GloVe is not available offline); the imported one holds GloVe's.

LLM text (tmr with config.text.llm = an `import_llm` directory): the TMR text encoder reads the
frozen LLM's final hidden states (after its final RMSNorm) over the caption's tokens (BOS when
the tokenizer has one, then the caption, at most text.max_words tokens) instead of learned word
embeddings (`LLMTextFeatures`). The LLM is no part of the model: it is never trained nor saved;
meta.json records its directory and load_evaluator loads it from there.

The first `prepare` of a run writes WORKDIR/evaluator/ (meta.json: kind, representation,
model config, vocabulary; mean.npy / std.npy: the feature statistics it normalises with), so
a trained evaluator loads without its training data.
"""
from __future__ import annotations

import io
import json
import pathlib
import re
import zlib
from collections import Counter
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from llamo_jax.convert import pretrained
from llamo_jax.core import paths
from llamo_jax.core import sharding
from llamo_jax.data import pipeline as motion_pipeline
from llamo_jax.data import prepare
from llamo_jax.data import records
from llamo_jax.eval import t2m_metrics
from llamo_jax.models import evaluators as models
from llamo_jax.motion import humanml3d
from llamo_jax.motion import representation as representation_lib
from llamo_jax.synthetic import captions as captions_lib
from llamo_jax.training import runs
from llamo_jax.training import task as task_lib

KINDS = ("guo", "tmr")
META_DIR = "evaluator"  # WORKDIR/evaluator/{meta.json, mean.npy, std.npy[, params.npz]}
UNIT_LENGTH = models.UNIT_LENGTH
MAX_MOTION_LENGTH = 196
GUO_MAX_WORDS = 20  # tokens between sos and eos
SOS, EOS, UNK = "sos", "eos", "unk"

# The released WordVectorizer (HumanML3D): POS one-hot slots, and words whose slot overrides their tag.
POS_ENUMERATOR = {"VERB": 0, "NOUN": 1, "DET": 2, "ADP": 3, "NUM": 4, "AUX": 5, "PRON": 6, "ADJ": 7, "ADV": 8,
                  "Loc_VIP": 9, "Body_VIP": 10, "Obj_VIP": 11, "Act_VIP": 12, "Desc_VIP": 13, "OTHER": 14}
VIP_WORDS = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back",
                "backward", "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee",
                 "shoulder", "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                "turn", "stumble", "dance", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel",
                "stroll", "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread",
                "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                 "angrily", "sadly"),
}
_VIP_OF = {w: slot for slot, words in VIP_WORDS.items() for w in words}

# Closed word classes for words outside the synthetic lexicon (universal POS tags).
_CLOSED = {**{w: "DET" for w in "a an the this that these those some each every both another".split()},
           **{w: "ADP" for w in "in on at to from with by of over under into onto around through across along "
                                "towards toward behind above below near off out like after before".split()},
           **{w: "PRON" for w in "he she it they them his her their its him someone somebody something "
                                 "himself herself themselves".split()},
           **{w: "AUX" for w in "is are was were be been being has have had will would can could".split()},
           **{w: "CCONJ" for w in "and or but".split()},
           **{w: "SCONJ" for w in "while as if until because".split()}}
_FUNCTION_POS = ("DET", "ADP", "PRON", "AUX", "CCONJ", "SCONJ", "PART", "INTJ")
_TAGGED = re.compile(r"^\S+/\S+(\s+\S+/\S+)*$")


# --------------------------------------------------------------------------- text


def tag_caption(text: str) -> list[tuple[str, str]]:
  """A caption -> [(lemma, universal POS)] (see the module docstring); `word/POS ...` is parsed as is."""
  text = text.strip()
  if _TAGGED.match(text):
    return [tuple(t.rsplit("/", 1)) for t in text.split()]
  out = []
  for word in re.findall(r"[a-z0-9']+", text.lower().replace("-", "")):
    try:
      lemma, pos = captions_lib.tag(word).rsplit("/", 1)
    except KeyError:
      if not word.isalpha():
        continue
      lemma, pos = word, _CLOSED.get(word, "ADV" if word.endswith("ly") else "NOUN")
      if pos == "NOUN" and word.endswith("ing") and len(word) > 5:
        lemma, pos = word[:-3], "VERB"
    out.append((lemma, pos))
  return out


def build_vocabulary(captions: Sequence[str], min_count: int = 1) -> list[str]:
  """sos, eos, unk, then every lemma seen at least `min_count` times, most frequent first."""
  counts = Counter(lemma for c in captions for lemma, _ in tag_caption(c))
  words = sorted((w for w, n in counts.items() if n >= min_count and w not in (SOS, EOS, UNK)),
                 key=lambda w: (-counts[w], w))
  return [SOS, EOS, UNK] + words


def guo_text_arrays(texts: Sequence[str], word_index: dict[str, int]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(word ids [N, 22], POS ids [N, 22], lengths [N]) as the released HumanML3D loader builds them."""
  n_tok = GUO_MAX_WORDS + 2
  words = np.full((len(texts), n_tok), word_index[UNK], np.int32)
  pos = np.full((len(texts), n_tok), POS_ENUMERATOR["OTHER"], np.int32)
  lengths = np.zeros((len(texts),), np.int32)
  for i, text in enumerate(texts):
    tokens = [(SOS, "OTHER")] + tag_caption(text)[:GUO_MAX_WORDS] + [(EOS, "OTHER")]
    lengths[i] = len(tokens)
    for j, (word, tag) in enumerate(tokens):
      if word in word_index:
        words[i, j] = word_index[word]
        slot = _VIP_OF.get(word, tag)
        pos[i, j] = POS_ENUMERATOR.get(slot, POS_ENUMERATOR["OTHER"])
  return words, pos, lengths


def tmr_text_arrays(texts: Sequence[str], word_index: dict[str, int], max_words: int, buckets: int = 256
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(word ids [N, max_words], lengths [N] >= 1, content-word multi-hot [N, buckets]).

  The multi-hot (content lemmas hashed into buckets) finds near-duplicate captions in a batch.
  """
  words = np.zeros((len(texts), max_words), np.int32)
  lengths = np.ones((len(texts),), np.int32)
  bags = np.zeros((len(texts), buckets), np.float32)
  unk = word_index[UNK]
  for i, text in enumerate(texts):
    tokens = tag_caption(text)[:max_words] or [(UNK, "OTHER")]
    lengths[i] = len(tokens)
    words[i, :len(tokens)] = [word_index.get(w, unk) for w, _ in tokens]
    for w, tag in tokens:
      if tag not in _FUNCTION_POS:
        bags[i, zlib.crc32(w.encode()) % buckets] = 1.0
  return words, lengths, bags


class LLMTextFeatures:
  """Captions -> the frozen hidden states of an imported LLM (`python -m llamo_jax.import_llm`).

  Features are the LLM's final hidden states (after its final RMSNorm) at the caption's tokens:
  BOS (when the tokenizer has one) + the caption's tokens, cut to `max_words`. A HumanML3D
  `word/POS ...` string is read as its words. The forward is deterministic and, the attention
  being causal, independent of the padding after a caption, so each distinct caption runs
  through the LLM once and its features are cached on the host (exactly what a forward inside
  the train step would give, for a fraction of the compute).
  """

  BATCH = 32

  def __init__(self, directory: paths.PathLike, max_words: int, *, missing_hint: str = ""):
    directory = paths.absolute(directory)
    if not pretrained.is_pretrained_dir(directory):
      raise FileNotFoundError(
          f"LLM directory {directory} (the text LLM of this tmr evaluator) does not exist or is not an "
          "imported LLM (it needs config.json and params/). "
          + (missing_hint or "Create it with python -m llamo_jax.import_llm --source=HF_FOLDER_OR_GGUF "
             f"--out={directory}, or set config.text.llm to an existing import_llm directory."))
    self.directory = str(directory)
    self.source = json.loads((directory / pretrained.CONFIG_FILE).read_text()).get("source")
    self.llm_config, self._model, self.tokenizer = pretrained.load_pretrained(directory)
    # The LLM runs on this host's first device, for this host's captions, whatever mesh the
    # caller (the trainer's step) has made current.
    self._mesh = sharding.make_mesh({}, devices=jax.local_devices()[:1])
    self.dim = self.llm_config.dim
    self.max_words = int(max_words)
    self._cache: dict[str, np.ndarray] = {}

  def token_ids(self, text: str) -> list[int]:
    """The ids the LLM reads for `text` (at least one, at most max_words)."""
    if _TAGGED.match(text.strip()):
      text = " ".join(word for word, _ in tag_caption(text))
    tok = self.tokenizer
    ids = tok.encode(text, add_bos=tok.bos_id is not None)[:self.max_words]
    return ids or [tok.pad_id]

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (features [N, max_words, D] float32, zero past each length; lengths [N] in tokens)."""
    missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
    for start in range(0, len(missing), self.BATCH):
      chunk = missing[start:start + self.BATCH]
      ids = [self.token_ids(t) for t in chunk]
      # Padded to a power of two (>= 8, <= max_words): a few compilations, and short captions
      # do not pay for max_words.
      width = min(self.max_words, max(8, 1 << (max(map(len, ids)) - 1).bit_length()))
      tokens = np.full((self.BATCH, width), self.tokenizer.pad_id, np.int32)
      for i, row in enumerate(ids):
        tokens[i, :len(row)] = row
      with jax.set_mesh(self._mesh):
        hidden = np.asarray(_llm_hidden_jit(self._model, tokens))
      for i, text in enumerate(chunk):
        self._cache[text] = hidden[i, :len(ids[i])].copy()
    features = np.zeros((len(texts), self.max_words, self.dim), np.float32)
    lengths = np.zeros((len(texts),), np.int32)
    for i, text in enumerate(texts):
      h = self._cache[text]
      features[i, :len(h)] = h
      lengths[i] = len(h)
    return features, lengths

  def meta(self) -> dict[str, Any]:
    """What meta.json records of the LLM (load_evaluator reloads it from `dir`)."""
    architecture = self.llm_config.to_dict()
    return {"dir": self.directory, "dim": self.dim, "source": self.source,
            "llama": {f: architecture[f] for f in pretrained.ARCHITECTURE_FIELDS}}


def _llm_hidden(model: nnx.Module, tokens: jax.Array) -> jax.Array:
  """tokens [B, L] -> the final hidden states [B, L, D] float32 (after the final norm)."""
  hidden, _ = model.backbone(model.embed_tokens(tokens))
  return hidden.astype(jnp.float32)


_llm_hidden_jit = nnx.jit(_llm_hidden)


def _text_llm(config_dir: str, meta: dict[str, Any] | None, meta_file: paths.PathLike, max_words: int
              ) -> LLMTextFeatures | None:
  """The LLM text features of a tmr evaluator: from meta.json's record once written (a training
  workdir, an imported folder), else from config.text.llm; None for learned words."""
  if meta is None:
    return LLMTextFeatures(config_dir, max_words) if config_dir else None
  record = meta.get("llm")
  if not record:
    if config_dir:
      raise ValueError(f"config.text.llm={config_dir!r}, but {meta_file} records an evaluator with learned "
                       "word embeddings; use a new workdir for an LLM-text evaluator.")
    return None
  source = record.get("source") or "HF_FOLDER_OR_GGUF"
  llm = LLMTextFeatures(record["dir"], max_words, missing_hint=(
      f"The evaluator ({meta_file}) reads its text through this frozen LLM, which is not saved with it. "
      f"Put the directory back, re-import it (python -m llamo_jax.import_llm --source={source} "
      f"--out={record['dir']}), or, if it moved, set \"llm\" -> \"dir\" in {meta_file} to its new place."))
  stored = record.get("llama", {})
  now = llm.meta()["llama"]
  diff = [f"{k}: recorded {stored[k]!r}, found {now[k]!r}" for k in stored if stored[k] != now.get(k)]
  if diff:
    raise ValueError(f"The LLM at {llm.directory} is not the one the evaluator ({meta_file}) was trained with: "
                     + "; ".join(diff) + ".")
  return llm


def near_duplicates(bags: jax.Array, threshold: float) -> jax.Array:
  """[B, B] bool: Jaccard similarity of the content-word sets >= threshold."""
  inter = bags @ bags.T
  sizes = bags.sum(-1)
  union = sizes[:, None] + sizes[None, :] - inter
  return inter >= threshold * jnp.maximum(union, 1.0)


# --------------------------------------------------------------------------- motion


def motion_input_dims(representation: str, kind: str) -> int:
  """Feature dims the evaluator reads: guo on hml263 drops the 4 foot contacts (as released)."""
  rep = representation_lib.get_representation(representation)
  if kind == "guo" and representation == "hml263":
    return humanml3d.GROUPS["contacts"].start
  return rep.dim


# --------------------------------------------------------------------------- the model behind both


class _Encoders:
  """Turns texts and normalised, padded motions into the model's inputs; shared by the task and Evaluator."""

  def __init__(self, kind: str, model_config: Any, vocabulary: Sequence[str], max_words: int,
               text_llm: LLMTextFeatures | None = None):
    self.kind = kind
    self.model_config = model_config
    self.word_index = {w: i for i, w in enumerate(vocabulary)}
    self.max_words = max_words
    self.text_llm = text_llm  # tmr only: frozen LLM features instead of learned words

  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    if self.kind == "guo":
      return models.GuoEvaluator(self.model_config, rngs=rngs)
    return models.TMREvaluator(self.model_config, rngs=rngs)

  def text_batch(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
    if self.kind == "guo":
      words, pos, lengths = guo_text_arrays(texts, self.word_index)
      return {"words": words, "pos": pos, "text_length": lengths}
    words, lengths, bags = tmr_text_arrays(texts, self.word_index, self.max_words)
    if self.text_llm is not None:  # the bags (near-duplicate filter) stay lexical
      features, lengths = self.text_llm(texts)
      return {"text_features": features, "text_length": lengths, "bag": bags}
    return {"words": words, "text_length": lengths, "bag": bags}


def _encode_text(model: nnx.Module, batch: dict[str, jax.Array], dropout_key: jax.Array | None = None
                 ) -> jax.Array:
  if isinstance(model, models.GuoEvaluator):
    return model.encode_text(batch["words"], batch["pos"], batch["text_length"])
  if "text_features" in batch:
    return model.encode_text(batch["text_features"], batch["text_length"], dropout_key)
  return model.encode_text(batch["words"], batch["text_length"], dropout_key)


def _encode_motion(model: nnx.Module, features: jax.Array, lengths: jax.Array,
                   dropout_key: jax.Array | None = None) -> jax.Array:
  features = features[..., :model.config.input_dim]
  return model.encode_motion(features, lengths, dropout_key)


_encode_text_jit = nnx.jit(_encode_text)
_encode_motion_jit = nnx.jit(_encode_motion)


# --------------------------------------------------------------------------- training


class EvaluatorTask(task_lib.Task):
  """A text-motion evaluator (config.evaluator: guo | tmr) on one representation's records."""

  def prepare(self) -> None:
    cfg = self.config
    kind = cfg.get("evaluator", None)
    if kind not in KINDS:
      raise ValueError(f"config.evaluator={kind!r}: choose one of {KINDS}.")
    llm_dir = str(cfg.text.get("llm", "") or "")
    if llm_dir and kind != "tmr":
      raise ValueError(f"config.text.llm={llm_dir!r} is for evaluator tmr; the guo text encoder reads word "
                       "vectors and POS. Use configs/evaluator.py:tmr,llm=DIR.")
    meta_dir = epath.Path(self.workdir) / META_DIR
    meta = None
    if (meta_dir / "meta.json").exists():
      meta = json.loads((meta_dir / "meta.json").read_text())
      vocabulary = meta["vocabulary"]
      self.mean, self.std = paths.load_npy(meta_dir / "mean.npy"), paths.load_npy(meta_dir / "std.npy")
    else:
      if "corpus" in cfg.data:
        corpus_dir = prepare.ensure_synthetic_corpus(cfg.data.corpus)
        prepare.ensure_records(corpus_dir, cfg.data.path, cfg.data.representation,
                               mirror=bool(cfg.data.get("mirror", False)))
      self.mean, self.std = motion_pipeline.load_stats(cfg.data)
      vocabulary = build_vocabulary(_train_captions(cfg.data.path), int(cfg.text.get("min_count", 1)))
    self.representation = representation_lib.get_representation(cfg.data.representation)
    max_words = int(cfg.text.get("max_words", GUO_MAX_WORDS))
    text_llm = _text_llm(llm_dir, meta, meta_dir / "meta.json", max_words) if kind == "tmr" else None
    model_fields = {**cfg.model.to_dict(), "input_dim": motion_input_dims(self.representation.name, kind),
                    "vocab_size": len(vocabulary)}
    if text_llm is not None:
      model_fields["text_feature_dim"] = text_llm.dim
    config_cls = models.GuoConfig if kind == "guo" else models.TMRConfig
    self.encoders = _Encoders(kind, config_cls.from_dict(model_fields), vocabulary, max_words, text_llm)
    if meta is None and jax.process_index() == 0:
      write_meta(meta_dir, kind, self.representation.name, self.encoders.model_config.to_dict(), vocabulary,
                 self.encoders.max_words, self.mean, self.std,
                 llm=None if text_llm is None else text_llm.meta())

  @property
  def kind(self) -> str:
    return self.encoders.kind

  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return self.encoders.make_model(rngs)

  @property
  def trainable(self) -> Any:
    if self.kind == "guo" and not self.encoders.model_config.train_word_table:
      return nnx.All(nnx.Param, nnx.Not(nnx.PathContains("word_table")))
    return nnx.Param

  def make_loader(self, split: str, *, seed: int, process_index: int, process_count: int) -> Iterator:
    return motion_pipeline.make_motion_loader(self.config, split, seed=seed, process_index=process_index,
                                              process_count=process_count)

  def device_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """Motion arrays plus the captions as word/POS ids or the frozen LLM's features (on the host)."""
    out = {k: batch[k] for k in ("features", "length")}
    if "caption" in batch:
      out.update(self.encoders.text_batch(list(batch["caption"])))
    else:  # already a device batch
      out.update({k: v for k, v in batch.items() if k not in out})
    return out

  def loss(self, model, batch, rng):
    motion_key, text_key, shift_key = jax.random.split(rng, 3)
    text = _encode_text(model, batch, text_key)
    motion = _encode_motion(model, batch["features"], batch["length"], motion_key)
    if self.kind == "guo":
      b, n = text.shape[0], int(self.config.loss.get("num_negatives", 1))
      if n >= b - 1:  # every other motion of the batch
        shifts = jnp.arange(1, b)
      else:
        shifts = jax.random.randint(shift_key, (n,), 1, b)
      return models.guo_contrastive_loss(text, motion, shifts, float(self.config.loss.margin))
    same = near_duplicates(batch["bag"], float(self.config.loss.duplicate_threshold))
    return models.infonce_loss(text, motion, same, float(self.config.loss.temperature))

  def units_per_batch(self, batch):
    return "clips", float(batch["length"].shape[0])

  def evaluate(self, model, step, writer):
    """R-precision top-1/3 of real motions against their captions on config.eval_split (whole clips)."""
    evaluator = Evaluator(self.encoders, model, self.representation.name, self.mean, self.std, str(self.workdir))
    result = split_r_precision(evaluator, self.config.data.path, self.config.get("eval_split", "val"),
                               repeats=int(self.config.get("eval_repeats", 5)),
                               max_clips=self.config.get("eval_clips", None))
    return {f"r_precision_{k}" if k.startswith("top") else k: v["mean"]
            for k, v in result.items() if isinstance(v, dict)}


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """x padded along axis 0 to `rows` by repeating its last row (a fixed shape: one compilation)."""
  if len(x) >= rows:
    return x
  return np.concatenate([x, np.repeat(x[-1:], rows - len(x), axis=0)])


def _train_captions(records_path: str) -> list[str]:
  source = records.open_dataset(records_path).data_source("train")
  return [c for i in range(len(source)) for c in records.decode(source[i])["captions"]]


def write_meta(meta_dir: paths.PathLike, kind: str, representation: str, model_config: dict[str, Any],
               vocabulary: Sequence[str], max_words: int, mean: np.ndarray, std: np.ndarray,
               llm: dict[str, Any] | None = None) -> None:
  """WORKDIR/evaluator/ (any epath): what `load_evaluator` needs besides the weights (and, for LLM
  text, the LLM directory it records in "llm": `LLMTextFeatures.meta`)."""
  meta_dir = epath.Path(meta_dir)
  meta_dir.mkdir(parents=True, exist_ok=True)
  paths.save_npy(meta_dir / "mean.npy", np.asarray(mean, np.float32))
  paths.save_npy(meta_dir / "std.npy", np.asarray(std, np.float32))
  (meta_dir / "meta.json").write_text(json.dumps(
      {"kind": kind, "representation": representation, "model": model_config, "max_words": max_words,
       "unit_length": UNIT_LENGTH, "max_motion_length": MAX_MOTION_LENGTH, "vocabulary": list(vocabulary),
       **({"llm": llm} if llm else {})},
      indent=1))


# --------------------------------------------------------------------------- use


def split_r_precision(evaluator: "Evaluator", records_path: str, split: str, *, repeats: int = 20,
                      seed: int = 0, max_clips: int | None = None) -> dict[str, Any]:
  """R-precision of real motions of a records split against their own captions.

  Whole clips (the first 196 frames, cut to a multiple of 4); each repeat draws one caption per
  clip and shuffles the clips into batches of 32 (the whole split when it has fewer clips).
  Returns {"top1"|"top2"|"top3": {"mean", "ci95"}, "matching_dist": {...}, "clips": N, "repeats": R}.
  """
  source = records.open_dataset(records_path).data_source(split)
  n = len(source) if max_clips is None else min(len(source), int(max_clips))
  clips = [records.decode(source[i]) for i in range(n)]
  motions = evaluator.encode_motions([c["features"] for c in clips])
  captions = [c["captions"] for c in clips]
  flat = evaluator.encode_texts([t for caps in captions for t in caps])
  offsets = np.cumsum([0] + [len(caps) for caps in captions])
  rng = np.random.default_rng(seed)
  batch = min(t2m_metrics.R_PRECISION_BATCH, n)
  tops, dists = [], []
  for _ in range(repeats):
    pick = np.array([offsets[i] + rng.integers(len(captions[i])) for i in range(n)])
    top, mm_dist = t2m_metrics.r_precision_mm_dist(flat[pick], motions, rng, batch_size=batch)
    tops.append(top)
    dists.append(mm_dist)
  tops = np.array(tops)
  ci = t2m_metrics.mean_ci95
  return {"top1": ci(tops[:, 0]), "top2": ci(tops[:, 1]), "top3": ci(tops[:, 2]),
          "matching_dist": ci(dists), "clips": n, "repeats": repeats}


class Evaluator:
  """A trained or imported evaluator: raw texts and motions -> embeddings (numpy [N, E]).

  Attributes: kind ("guo" | "tmr"), representation ("hml263" | "mm272"), unit_length (4),
  max_motion_length (196), dim (the embedding size), mean / std (the feature statistics), source
  (the folder), step (the training step of the weights; None when imported).
  """

  BATCH = 32

  def __init__(self, encoders: _Encoders, model: nnx.Module, representation: str, mean: np.ndarray,
               std: np.ndarray, source: str, step: int | None = None):
    self.kind = encoders.kind
    self._encoders = encoders
    self.model = model
    self.model.eval()
    self.representation = representation
    self.unit_length = UNIT_LENGTH
    self.max_motion_length = MAX_MOTION_LENGTH
    self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    self.dim = encoders.model_config.embed_dim
    self.source = source
    self.step = step  # the training step of the weights (None: imported)

  def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
    """Captions (or HumanML3D `word/POS ...` token strings) -> [N, E] float32."""
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
      raise TypeError("encode_texts takes a list of str.")
    out = []
    for start in range(0, len(texts), self.BATCH):
      chunk = texts[start:start + self.BATCH]
      batch = {k: _pad_rows(v, self.BATCH) for k, v in self._encoders.text_batch(chunk).items()}
      out.append(np.asarray(_encode_text_jit(self.model, batch))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

  def encode_motions(self, motions: Sequence[np.ndarray]) -> np.ndarray:
    """Raw features, each [T, dims] (T >= 4) -> [N, E] float32.

    Each clip is cut to its first 196 frames and to a multiple of 4, normalised with the
    evaluator's mean/std and zero-padded to 196 frames (as the released loader does).
    """
    padded = np.zeros((len(motions), self.max_motion_length, self.mean.shape[0]), np.float32)
    lengths = np.zeros((len(motions),), np.int32)
    for i, m in enumerate(motions):
      m = np.asarray(m, np.float32)
      if m.ndim != 2 or m.shape[1] != self.mean.shape[0]:
        raise ValueError(f"motion {i} has shape {m.shape}; this {self.representation} evaluator takes "
                         f"[T, {self.mean.shape[0]}] features.")
      n = min(len(m), self.max_motion_length)
      n -= n % self.unit_length
      if n < self.unit_length:
        raise ValueError(f"motion {i} has {len(m)} frames; the evaluator needs at least {self.unit_length}.")
      if not np.isfinite(m[:n]).all():
        raise ValueError(f"motion {i} has NaN or inf features.")
      padded[i, :n] = (m[:n] - self.mean) / self.std
      lengths[i] = n
    out = []
    for start in range(0, len(motions), self.BATCH):
      f = _pad_rows(padded[start:start + self.BATCH], self.BATCH)
      n = _pad_rows(lengths[start:start + self.BATCH], self.BATCH)
      out.append(np.asarray(_encode_motion_jit(self.model, f, n))[:min(self.BATCH, len(motions) - start)])
    return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _meta(path: epath.Path) -> dict[str, Any]:
  meta = json.loads((path / META_DIR / "meta.json").read_text())
  if meta.get("kind") not in KINDS:
    raise ValueError(f"{path / META_DIR / 'meta.json'} names kind {meta.get('kind')!r}, not one of {KINDS}.")
  return meta


def load_evaluator(path: paths.PathLike) -> Evaluator:
  """The evaluator of a training workdir (configs/evaluator.py) or an import_evaluator output folder
  (either local or gs://). A tmr evaluator with LLM text (config.text.llm) also loads its frozen
  LLM, from the directory meta.json records ("llm" -> "dir")."""
  path = epath.Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"Evaluator {path} does not exist: pass an evaluator training workdir "
                            "(python -m llamo_jax.train --config=configs/evaluator.py:guo --workdir=W) or the "
                            "--out folder of python -m llamo_jax.import_evaluator.")
  params_file = path / META_DIR / "params.npz"
  if params_file.exists():  # imported
    meta = _meta(path)
    config_cls = models.GuoConfig if meta["kind"] == "guo" else models.TMRConfig
    text_llm = _text_llm("", meta, path / META_DIR / "meta.json", meta["max_words"])
    encoders = _Encoders(meta["kind"], config_cls.from_dict(meta["model"]), meta["vocabulary"],
                         meta["max_words"], text_llm)
    model = encoders.make_model(nnx.Rngs(0))
    load_params(model, params_file)
    return Evaluator(encoders, model, meta["representation"], paths.load_npy(path / META_DIR / "mean.npy"),
                     paths.load_npy(path / META_DIR / "std.npy"), str(path))
  if not (path / "config.json").exists():
    raise FileNotFoundError(f"{path} is neither an evaluator training workdir (no config.json) nor an "
                            f"import_evaluator folder (no {META_DIR}/params.npz).")
  config = runs.load_run_config(path, task="evaluator")
  if not (path / META_DIR / "meta.json").exists():
    raise FileNotFoundError(f"{path / META_DIR / 'meta.json'} not found: the evaluator run in {path} never "
                            "started; train it first.")
  task, model, step = runs.restore(config, path, EvaluatorTask)
  return Evaluator(task.encoders, model, task.representation.name, task.mean, task.std, str(path), step)


def save_params(model: nnx.Module, path: pathlib.Path) -> None:
  """Every nnx.Param of `model` into an .npz keyed by its '/'-joined path."""
  flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
  np.savez(path, **{"/".join(map(str, k)): np.asarray(v[...]) for k, v in flat})


def load_params(model: nnx.Module, path: paths.PathLike) -> None:
  """Sets `model`'s params from `save_params`' file (any epath); a missing or mis-shaped entry is named."""
  stored = np.load(io.BytesIO(epath.Path(path).read_bytes()))
  state = nnx.state(model, nnx.Param)
  flat = nnx.to_flat_state(state)
  for key, var in flat:
    name = "/".join(map(str, key))
    if name not in stored:
      raise ValueError(f"{path} has no parameter {name!r}; it was written for another model.")
    if stored[name].shape != var[...].shape:
      raise ValueError(f"{path}: {name} has shape {stored[name].shape}, the model {var[...].shape}.")
    var[...] = jnp.asarray(stored[name])
  nnx.update(model, nnx.from_flat_state(flat))
