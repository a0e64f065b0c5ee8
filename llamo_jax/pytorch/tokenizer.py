"""Text <-> ids for an exported LLaMo, from the saved tokenizer folder (no jax).

Reads the folder `data.tokenizer.Tokenizer.save` writes (the backend file and
llamo_tokenizer.json with the special ids) and follows the same rules: BOS/EOS are
added here, never by the backend; decoding drops BOS/EOS/pad. tests/pytorch checks
it gives data/tokenizer.py's ids and text.
"""
from __future__ import annotations

import json
import pathlib
from typing import Sequence

META_FILE = "llamo_tokenizer.json"
SP_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"


class Tokenizer:
  """encode(text, add_bos) / decode(ids) with the exported special ids."""

  def __init__(self, directory: str | pathlib.Path):
    directory = pathlib.Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
      raise FileNotFoundError(f"{meta_path} not found: {directory} is not an exported tokenizer "
                              "folder (python -m llamo_jax.export --format=pytorch writes one).")
    meta = json.loads(meta_path.read_text())
    self.backend = meta.get("backend")
    self.bos_id, self.eos_id, self.pad_id = meta.get("bos_id"), meta.get("eos_id"), meta.get("pad_id")
    if self.backend == "sentencepiece":
      import sentencepiece  # pylint: disable=g-import-not-at-top  (only the backend in use)
      self._model = sentencepiece.SentencePieceProcessor(model_file=str(directory / SP_FILE))
    elif self.backend == "tokenizers":
      import tokenizers  # pylint: disable=g-import-not-at-top  (only the backend in use)
      self._model = tokenizers.Tokenizer.from_file(str(directory / HF_FILE))
    else:
      raise ValueError(f"{meta_path}: unknown tokenizer backend {self.backend!r}.")

  def encode(self, text: str, add_bos: bool = True) -> list[int]:
    if self.backend == "sentencepiece":
      ids = list(self._model.encode(text))
    else:
      ids = self._model.encode(text, add_special_tokens=False).ids
    if add_bos:
      if self.bos_id is None:
        raise ValueError("This tokenizer has no BOS token.")
      ids = [self.bos_id] + ids
    return ids

  @property
  def vocab_size(self) -> int:
    if self.backend == "sentencepiece":
      return self._model.get_piece_size()
    return self._model.get_vocab_size(with_added_tokens=True)

  def decode(self, ids: Sequence[int]) -> str:
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"ids {bad[:5]} are outside the tokenizer's vocabulary [0, {self.vocab_size}); "
                       "the model's vocabulary is larger than its tokenizer's.")
    if self.backend == "sentencepiece":
      return self._model.decode(ids)
    drop = {self.bos_id, self.eos_id, self.pad_id} - {None}
    return self._model.decode([i for i in ids if i not in drop], skip_special_tokens=True)
