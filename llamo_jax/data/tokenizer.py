"""One text tokenizer over two backends: SentencePiece (.model) and HF `tokenizers` (tokenizer.json).

The model only sees ids; this class owns the rules around them: BOS/EOS are added
here (never by a backend's post-processor, so both backends behave alike), and
new tokens such as "[BOM]"/"[EOM]" are appended after the existing vocabulary
(resizing the embedding table is the model's business).

A saved tokenizer directory holds the backend file (`tokenizer.model` or
`tokenizer.json`) and `llamo_tokenizer.json` with the special ids.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import tokenizers
from etils import epath

from llamo_jax.core.errors import InputError

META_FILE = "llamo_tokenizer.json"
FORMAT_VERSION = 1
SP_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"
BACKENDS = ("sentencepiece", "tokenizers")



class TokenizerFileError(InputError, ValueError):
  """A tokenizer file that cannot be read (damaged, or not the format its name says)."""

class Tokenizer:
  """Text <-> ids, with the special ids the model was trained with.

  Attributes:
    backend: "sentencepiece" or "tokenizers".
    bos_id, eos_id: ids of the begin/end-of-sequence tokens, or None if the
      tokenizer has none.
    pad_id: the pad token's id; the EOS id when the tokenizer has no pad token
      (Llama 3 has none), since padded positions are always masked out.
  """

  def __init__(self, model: spm.SentencePieceProcessor | tokenizers.Tokenizer, *,
               bos_id: int | None, eos_id: int | None, pad_id: int | None = None):
    if isinstance(model, spm.SentencePieceProcessor):
      self.backend = "sentencepiece"
    elif isinstance(model, tokenizers.Tokenizer):
      self.backend = "tokenizers"
    else:
      raise TypeError(f"Tokenizer needs a SentencePieceProcessor or tokenizers.Tokenizer, got {type(model)}.")
    self._model = model
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
      if value is not None and not 0 <= value < self.vocab_size:
        raise ValueError(f"{name}={value} is outside the vocabulary [0, {self.vocab_size}).")
    self.bos_id = bos_id
    self.eos_id = eos_id
    self._pad_id = pad_id

  # -------------------------------------------------------------------------
  # Construction.
  # -------------------------------------------------------------------------
  @classmethod
  def from_sentencepiece(cls, path: str | epath.Path) -> Tokenizer:
    """A SentencePiece `.model`; BOS/EOS/pad ids are the model's own (-1 = none)."""
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(epath.Path(path).read_bytes())
    return cls._from_sp_proto(proto)

  @classmethod
  def _from_sp_proto(cls, proto: Any, **special_ids: int | None) -> Tokenizer:
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    ids = {"bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "pad_id": sp.pad_id()}
    ids = {k: (v if v >= 0 else None) for k, v in ids.items()}
    ids.update(special_ids)
    return cls(sp, **ids)

  @classmethod
  def from_hf(cls, path: str | epath.Path, *, bos_token: str | None = None,
              eos_token: str | None = None, pad_token: str | None = None) -> Tokenizer:
    """An HF `tokenizer.json` (file or the folder holding it).

    Special tokens come from the arguments, else from `tokenizer_config.json`
    beside the file (`bos_token`, `eos_token`, `pad_token`), else from the
    ids in `config.json` there (`bos_token_id`, `eos_token_id`, `pad_token_id`).
    """
    path = epath.Path(path)
    file = path / HF_FILE if path.is_dir() else path
    if not file.is_file():
      raise FileNotFoundError(f"No HF tokenizer file at {file}.")
    model = tokenizers.Tokenizer.from_str(file.read_text())
    folder = file.parent
    tok_cfg = _read_json(folder / "tokenizer_config.json")
    model_cfg = _read_json(folder / "config.json")
    ids = {}
    for name, given in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token)):
      token = given if given is not None else tok_cfg.get(f"{name}_token")
      if isinstance(token, dict):  # serialized AddedToken
        token = token.get("content")
      if token is not None:
        token_id = model.token_to_id(token)
        if token_id is None:
          raise ValueError(f"{name}_token {token!r} (from {folder}) is not in the vocabulary of {file}.")
        ids[f"{name}_id"] = token_id
      else:
        token_id = model_cfg.get(f"{name}_token_id")
        if isinstance(token_id, list):  # several EOS ids (instruct models): the first ends a sequence
          token_id = token_id[0] if token_id else None
        ids[f"{name}_id"] = token_id
    return cls(model, **ids)

  @classmethod
  def load(cls, path: str | epath.Path) -> Tokenizer:
    """A tokenizer from a saved dir, a SentencePiece `.model`, a `tokenizer.json` or an HF folder.

    A damaged file (truncated, not the format its name says) raises TokenizerFileError.
    """
    path = epath.Path(path)
    try:
      return cls._load(path)
    except (FileNotFoundError, TokenizerFileError):
      raise
    except Exception as e:  # pylint: disable=broad-except  (protobuf, sentencepiece, tokenizers and json each fail their own way)
      raise TokenizerFileError(
          f"The tokenizer at {path} is damaged or unreadable ({type(e).__name__}: {str(e).strip()[:200]}); "
          "replace it with an intact copy (a training run rebuilds its own tokenizer/ when it is deleted "
          "before the first checkpoint).") from e

  @classmethod
  def _load(cls, path: epath.Path) -> Tokenizer:
    if path.is_file():
      if path.suffix == ".model":
        return cls.from_sentencepiece(path)
      if path.suffix == ".json":
        return cls.from_hf(path)
      raise TokenizerFileError(f"Cannot tell the tokenizer type of {path}: expected a SentencePiece `.model` "
                       "or an HF `tokenizer.json`.")
    if not path.is_dir():
      raise FileNotFoundError(f"No tokenizer at {path}.")
    if (path / META_FILE).is_file():
      meta = json.loads((path / META_FILE).read_text())
      if meta.get("format_version") != FORMAT_VERSION or meta.get("backend") not in BACKENDS:
        raise TokenizerFileError(f"{path / META_FILE} is not a llamo_jax tokenizer of format {FORMAT_VERSION} "
                         f"(got {meta}).")
      ids = {k: meta[k] for k in ("bos_id", "eos_id", "pad_id")}
      if meta["backend"] == "sentencepiece":
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((path / SP_FILE).read_bytes())
        return cls._from_sp_proto(proto, **ids)
      return cls(tokenizers.Tokenizer.from_str((path / HF_FILE).read_text()), **ids)
    if (path / HF_FILE).is_file():
      return cls.from_hf(path)
    if (path / SP_FILE).is_file():
      return cls.from_sentencepiece(path / SP_FILE)
    raise FileNotFoundError(
        f"No tokenizer in {path}: expected {HF_FILE} (HF tokenizers), {SP_FILE} (SentencePiece) "
        f"or a saved llamo_jax tokenizer ({META_FILE}).")

  def save(self, directory: str | epath.Path) -> None:
    """Writes the backend file and `llamo_tokenizer.json` into `directory`."""
    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if self.backend == "sentencepiece":
      (directory / SP_FILE).write_bytes(self._model.serialized_model_proto())
    else:
      (directory / HF_FILE).write_text(self._model.to_str())
    meta = {"format_version": FORMAT_VERSION, "backend": self.backend,
            "bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self._pad_id}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

  # -------------------------------------------------------------------------
  # Vocabulary.
  # -------------------------------------------------------------------------
  @property
  def vocab_size(self) -> int:
    """Number of ids, added tokens included."""
    if self.backend == "sentencepiece":
      return self._model.get_piece_size()
    return self._model.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    if self._pad_id is not None:
      return self._pad_id
    if self.eos_id is None:
      raise ValueError("This tokenizer has neither a pad nor an EOS token to pad with.")
    return self.eos_id

  @property
  def backend_model(self) -> spm.SentencePieceProcessor | tokenizers.Tokenizer:
    """The wrapped SentencePieceProcessor or tokenizers.Tokenizer (for exporters)."""
    return self._model

  def token_to_id(self, token: str) -> int | None:
    """The id of a whole token (piece), or None when it is not in the vocabulary."""
    if self.backend == "sentencepiece":
      token_id = self._model.piece_to_id(token)
      # piece_to_id maps unknown pieces to unk; tell them apart by the piece text.
      return token_id if self._model.id_to_piece(token_id) == token else None
    return self._model.token_to_id(token)

  def id_to_token(self, token_id: int) -> str:
    if not 0 <= token_id < self.vocab_size:
      raise ValueError(f"id {token_id} is outside the vocabulary [0, {self.vocab_size}).")
    if self.backend == "sentencepiece":
      return self._model.id_to_piece(token_id)
    return self._model.id_to_token(token_id)

  def add_tokens(self, tokens: Sequence[str]) -> list[int]:
    """Appends whole tokens (e.g. ["[BOM]", "[EOM]"]) after the vocabulary; returns their ids.

    Added tokens are always matched whole in text and decode to their own text.
    Tokens already in the vocabulary keep their id (so re-adding is a no-op).
    """
    missing = [t for t in dict.fromkeys(tokens) if self.token_to_id(t) is None]
    if missing and self.backend == "sentencepiece":
      proto = sentencepiece_model_pb2.ModelProto()
      proto.ParseFromString(self._model.serialized_model_proto())
      for token in missing:
        piece = proto.pieces.add()
        piece.piece, piece.score = token, 0.0
        piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
      self._model = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    elif missing:
      n_before = self.vocab_size
      self._model.add_tokens([tokenizers.AddedToken(t, normalized=False, special=False) for t in missing])
      if self.vocab_size != n_before + len(missing):
        raise RuntimeError(f"Adding {missing} grew the vocabulary from {n_before} to {self.vocab_size}.")
    ids = [self.token_to_id(t) for t in tokens]
    if any(i is None for i in ids):
      raise RuntimeError(f"Tokens {tokens} did not all get ids ({ids}).")
    return ids

  # -------------------------------------------------------------------------
  # Encoding.
  # -------------------------------------------------------------------------
  def encode(self, text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
    """Token ids of `text`, with BOS/EOS when asked."""
    if self.backend == "sentencepiece":
      ids = list(self._model.encode(text))
    else:
      ids = self._model.encode(text, add_special_tokens=False).ids
    if add_bos:
      if self.bos_id is None:
        raise ValueError("This tokenizer has no BOS token; encode with add_bos=False.")
      ids = [self.bos_id] + ids
    if add_eos:
      if self.eos_id is None:
        raise ValueError("This tokenizer has no EOS token; encode with add_eos=False.")
      ids = ids + [self.eos_id]
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`; BOS/EOS/pad and other control tokens are dropped, added tokens kept."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size}).")
    if self.backend == "sentencepiece":
      return self._model.decode(ids)
    drop = {self.bos_id, self.eos_id, self._pad_id} - {None}
    return self._model.decode([i for i in ids if i not in drop], skip_special_tokens=True)


def _read_json(path: epath.Path) -> dict:
  return json.loads(path.read_text()) if path.is_file() else {}
