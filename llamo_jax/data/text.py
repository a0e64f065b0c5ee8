"""Text-only data: caption corpora, a SentencePiece trainer, and a packed Grain LM pipeline."""
from __future__ import annotations

import pathlib
from typing import Sequence

import grain
import numpy as np
import sentencepiece as spm
from etils import epath

from llamo_jax.core import paths


def read_caption_lines(corpus_dir: str | epath.Path, split: str) -> list[str]:
  """Every caption of the clips listed in `corpus_dir/{split}.txt` (HumanML3D layout).

  Caption files hold lines `caption#word/POS ...#start#end`; only the caption is kept.
  """
  root = epath.Path(corpus_dir)
  split_file = root / f"{split}.txt"
  if not split_file.exists():
    raise FileNotFoundError(f"{split_file} not found: {root} is not a HumanML3D-layout corpus "
                            f"(build one with `python -m data_pipelines.synthetic --out={root}`).")
  lines = []
  for clip_id in split_file.read_text().split():
    text_file = root / "texts" / f"{clip_id}.txt"
    if not text_file.exists():
      continue  # clips without captions are motion-only; the record builder reports them
    for line in text_file.read_text().splitlines():
      caption = line.split("#", 1)[0].strip()
      if caption:
        lines.append(caption)
  if not lines:
    raise ValueError(f"No captions found for split {split!r} under {root / 'texts'}.")
  return lines


def train_sentencepiece(lines: Sequence[str], vocab_size: int, model_prefix: str | epath.Path) -> epath.Path:
  """Trains a BPE SentencePiece model on `lines`; returns the `.model` path.

  Byte fallback keeps unseen characters encodable; ids 0..3 are pad/unk/bos/eos. The files
  are written under a temporary name and renamed, so a killed run leaves no partial `.model`.
  """
  model_prefix = epath.Path(model_prefix)
  with paths.staged_dir(model_prefix.parent) as local:  # the trainer writes local files only
    partial = pathlib.Path(local) / f".{model_prefix.name}-partial"
    _train_sentencepiece(lines, vocab_size, str(partial))
    for suffix in (".vocab", ".model"):  # the .model last: its presence means the pair is complete
      pathlib.Path(f"{partial}{suffix}").replace(pathlib.Path(local) / f"{model_prefix.name}{suffix}")
  return model_prefix.with_suffix(".model")


def _train_sentencepiece(lines: Sequence[str], vocab_size: int, model_prefix: str) -> None:
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=model_prefix, vocab_size=vocab_size,
      model_type="bpe", byte_fallback=True, character_coverage=1.0,
      pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, minloglevel=2,
      hard_vocab_limit=False)


def make_text_loader(token_lists: Sequence[Sequence[int]], *, seq_len: int, global_batch_size: int,
                     seed: int, process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """A checkpointable iterator of packed LM batches: this host's rows of each global batch.

  Each example (already tokenized, with BOS/EOS) is packed first-fit into rows of
  `seq_len`. Every host packs the same global batch and keeps its contiguous slice
  of rows, so the global batch — and the losses — do not depend on the number of
  processes (text is cheap to pack; motion pipelines shard examples instead).
  Yields {"tokens", "segment_ids", "positions"}: int32 [global_batch_size // process_count,
  seq_len]; segment id 0 marks padding. Examples longer than `seq_len` are truncated.
  """
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by {process_count} processes.")
  examples = [np.asarray(t[:seq_len], np.int32) for t in token_lists if len(t) > 1]
  if not examples:
    raise ValueError("No example has more than one token; nothing to train on.")
  per_host = global_batch_size // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)
  ds = grain.MapDataset.source(examples).seed(seed).shuffle().repeat(None).map(lambda x: {"tokens": x})
  packed = grain.experimental.FirstFitPackIterDataset(
      ds.to_iter_dataset(), length_struct={"tokens": seq_len},
      num_packing_bins=max(2 * global_batch_size, 8), seed=seed)
  batched = packed.batch(global_batch_size, drop_remainder=True).map(
      lambda b: {"tokens": b["tokens"][rows], "segment_ids": b["tokens_segment_ids"][rows],
                 "positions": b["tokens_positions"][rows]})
  return iter(batched)
