r"""Scores text with a pretrained Llama: per-token log-probabilities and perplexity.

  python -m llamo_jax.score --checkpoint=DIR --text_file=F [--out=scores.json]
      [--batch_size=8] [--max_len=N]

DIR, F and --out may be local or gs:// (any etils.epath path).
Every non-empty line of F is one sequence, tokenized with BOS. The script
prints each line's perplexity and the overall (token-weighted) perplexity and,
with --out, writes JSON {"token_ids": [[...]], "logprobs": [[...]],
"line_perplexity": [...], "perplexity": p}, where token_ids[i] are line i's
ids (BOS first) and logprobs[i][j] = log p(token_ids[i][j+1] | token_ids[i][:j+1]),
the natural-log probability of token j+1 given the tokens before it (so
logprobs[i] is one shorter than token_ids[i]).

Lines are sorted by length and batched; each batch is right-padded to a
power-of-two length bucket (padding in its own segment, masked out), so the
forward pass compiles once per bucket, not once per line.
"""
from __future__ import annotations

import functools
import json
import math
import sys
from typing import Sequence

from absl import app
from absl import flags
from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.convert import pretrained
from llamo_jax.core import paths
from llamo_jax.data.tokenizer import Tokenizer

MIN_BUCKET = 16


@functools.partial(jax.jit, static_argnums=0)
def _token_logprobs(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array,
                    segment_ids: jax.Array) -> jax.Array:
  """tokens, segment_ids [B,T] -> log p(tokens[:, t+1] | tokens[:, :t+1]) [B,T-1], 0 at padding."""
  model = nnx.merge(graphdef, state)
  logits, _ = model(tokens, segment_ids=segment_ids)
  logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
  target = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  return jnp.where(segment_ids[:, 1:] != 0, target, 0.0)


def _bucket(length: int, max_len: int) -> int:
  return min(max(MIN_BUCKET, 1 << (length - 1).bit_length()), max_len)


def score_token_ids(model: nnx.Module, token_ids: Sequence[Sequence[int]], *, pad_id: int,
                    batch_size: int = 8, max_len: int | None = None) -> list[list[float]]:
  """logprobs[i][j] = log p(token_ids[i][j+1] | token_ids[i][:j+1]) for each sequence i."""
  max_len = model.cfg.max_seq_len if max_len is None else max_len
  for i, ids in enumerate(token_ids):
    if len(ids) < 2:
      raise ValueError(f"Sequence {i} has {len(ids)} token(s); scoring needs at least 2.")
    if len(ids) > max_len:
      raise ValueError(f"Sequence {i} has {len(ids)} tokens, more than --max_len={max_len}; "
                       "raise --max_len (up to the model's max_seq_len) or split the line.")
  graphdef, state = nnx.split(model)
  order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
  logprobs: list[list[float]] = [[] for _ in token_ids]
  for start in range(0, len(order), batch_size):
    rows = order[start:start + batch_size]
    length = _bucket(max(len(token_ids[i]) for i in rows), max_len)
    tokens = np.full((batch_size, length), pad_id, np.int32)
    segments = np.zeros((batch_size, length), np.int32)
    for r, i in enumerate(rows):
      tokens[r, :len(token_ids[i])] = token_ids[i]
      segments[r, :len(token_ids[i])] = 1
    out = np.asarray(_token_logprobs(graphdef, state, jnp.asarray(tokens), jnp.asarray(segments)))
    for r, i in enumerate(rows):
      logprobs[i] = out[r, :len(token_ids[i]) - 1].tolist()
  return logprobs


def score_lines(model: nnx.Module, tokenizer: Tokenizer, lines: Sequence[str], *,
                batch_size: int = 8, max_len: int | None = None
                ) -> tuple[list[list[int]], list[list[float]]]:
  """(token_ids, logprobs) of each line (BOS added); see the module docstring."""
  token_ids = [tokenizer.encode(line, add_bos=True) for line in lines]
  return token_ids, score_token_ids(model, token_ids, pad_id=tokenizer.pad_id,
                                    batch_size=batch_size, max_len=max_len)


def perplexity(logprobs: Sequence[Sequence[float]]) -> float:
  """exp(-mean log-probability) over all tokens of all sequences."""
  n = sum(len(lp) for lp in logprobs)
  return math.exp(-sum(sum(lp) for lp in logprobs) / n)


def score_file(checkpoint: paths.PathLike, text_file: paths.PathLike, out: paths.PathLike | None = None, *,
               batch_size: int = 8, max_len: int | None = None) -> dict:
  """Scores the non-empty lines of `text_file`; prints perplexities; writes `out` if given (any epath)."""
  text_file = epath.Path(text_file)
  if not text_file.is_file():
    raise FileNotFoundError(f"--text_file={text_file} does not exist.")
  lines = [l for l in text_file.read_text().splitlines() if l.strip()]
  if not lines:
    raise ValueError(f"{text_file} has no non-empty lines to score.")
  _, model, tokenizer = pretrained.load_pretrained(checkpoint)
  token_ids, logprobs = score_lines(model, tokenizer, lines, batch_size=batch_size, max_len=max_len)
  result = {"token_ids": token_ids, "logprobs": logprobs,
            "line_perplexity": [perplexity([lp]) for lp in logprobs],
            "perplexity": perplexity(logprobs)}
  for i, (line, ppl) in enumerate(zip(lines, result["line_perplexity"])):
    print(f"line {i}: {len(token_ids[i])} tokens, perplexity {ppl:.4f}  | {line[:60]}")
  n_scored = sum(len(lp) for lp in logprobs)
  print(f"overall: {len(lines)} lines, {n_scored} scored tokens, perplexity {result['perplexity']:.4f}")
  if out is not None:
    epath.Path(out).write_text(json.dumps(result) + "\n")
  return result


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share names)."""
  flags.DEFINE_string("checkpoint", None, "llamo_jax pretrained directory.", required=True)
  flags.DEFINE_string("text_file", None, "Text file; each non-empty line is scored.", required=True)
  flags.DEFINE_string("out", None, "Optional JSON output (token_ids, logprobs, perplexities).")
  flags.DEFINE_integer("batch_size", 8, "Lines per forward pass.")
  flags.DEFINE_integer("max_len", None, "Longest allowed line in tokens (default: model max_seq_len).")


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    score_file(f.checkpoint, f.text_file, f.out, batch_size=f.batch_size, max_len=f.max_len)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"score: error: {e}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
