"""Text-only data: caption corpora, a SentencePiece trainer, and a packed Grain LM pipeline."""
from __future__ import annotations

import pathlib
from typing import Sequence

import grain
import numpy as np
import sentencepiece as spm


def read_caption_lines(corpus_dir: str | pathlib.Path, split: str) -> list[str]:
  """Every caption of the clips listed in `corpus_dir/{split}.txt` (HumanML3D layout).

  Caption files hold lines `caption#word/POS ...#start#end`; only the caption is kept.
  """
  root = pathlib.Path(corpus_dir)
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


def train_sentencepiece(lines: Sequence[str], vocab_size: int, model_prefix: str | pathlib.Path) -> pathlib.Path:
  """Trains a BPE SentencePiece model on `lines`; returns the `.model` path.

  Byte fallback keeps unseen characters encodable; ids 0..3 are pad/unk/bos/eos.
  """
  model_prefix = pathlib.Path(model_prefix)
  model_prefix.parent.mkdir(parents=True, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=str(model_prefix), vocab_size=vocab_size,
      model_type="bpe", byte_fallback=True, character_coverage=1.0,
      pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, minloglevel=2,
      hard_vocab_limit=False)
  return model_prefix.with_suffix(".model")


def make_text_loader(token_lists: Sequence[Sequence[int]], *, seq_len: int, batch_size: int, seed: int,
                     process_index: int = 0, process_count: int = 1) -> grain.DatasetIterator:
  """A checkpointable iterator of packed LM batches for this host.

  Each example (already tokenized, with BOS/EOS) is packed first-fit into rows of
  `seq_len`. Yields {"tokens", "segment_ids", "positions"}: int32 [batch_size, seq_len];
  segment id 0 marks padding. Examples longer than `seq_len` are truncated.
  """
  examples = [np.asarray(t[:seq_len], np.int32) for t in token_lists if len(t) > 1]
  if len(examples) < process_count:
    raise ValueError(f"{len(examples)} examples cannot be split over {process_count} processes.")
  ds = grain.MapDataset.source(examples)[process_index::process_count]
  ds = ds.seed(seed).shuffle().repeat(None).map(lambda x: {"tokens": x})
  packed = grain.experimental.FirstFitPackIterDataset(
      ds.to_iter_dataset(), length_struct={"tokens": seq_len}, num_packing_bins=max(2 * batch_size, 8),
      seed=seed)
  batched = packed.batch(batch_size, drop_remainder=True).map(
      lambda b: {"tokens": b["tokens"], "segment_ids": b["tokens_segment_ids"],
                 "positions": b["tokens_positions"]})
  return iter(batched)
