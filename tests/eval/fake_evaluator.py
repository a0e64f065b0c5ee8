"""A deterministic stand-in for a trained text-motion evaluator (tests only).

Captions "clip K ..." name a code K; a clip's motion carries its code in the mean of its
first `CODES` feature dims (`clip_features`). Texts embed as P[K] (bag of words: the sum of
P rows of the code words), motions as the time-mean of those dims times P, plus the
per-dim time std of every feature times Q (so noise moves the motion embeddings).
"""
import re

import numpy as np

from llamo_jax.motion import representation as representation_lib

CODES = 64
DIM = 16


class FakeEvaluator:
  unit_length = 4
  max_motion_length = 196

  def __init__(self, representation: str = "hml263", seed: int = 0):
    self.representation = representation
    self.feature_dim = representation_lib.get_representation(representation).dim
    rng = np.random.default_rng(seed)
    self.p = rng.normal(size=(CODES, DIM))
    self.q = rng.normal(size=(self.feature_dim, DIM)) / np.sqrt(self.feature_dim)
    self.motion_calls = 0

  def encode_texts(self, texts):
    out = np.zeros((len(texts), DIM))
    for i, t in enumerate(texts):
      for code in re.findall(r"clip (\d+)", t):
        out[i] += self.p[int(code) % CODES]
    return out

  def encode_motions(self, motions):
    self.motion_calls += 1
    out = []
    for m in motions:
      m = np.asarray(m, np.float64)
      assert m.shape[1] == self.feature_dim and len(m) % self.unit_length == 0, m.shape
      assert len(m) <= self.max_motion_length
      out.append(m[:, :CODES].mean(0) @ self.p + m.std(0) @ self.q)
    return np.stack(out)


def clip_features(code: int, length: int, rng: np.random.Generator, dim: int = 263, noise: float = 0.05):
  """Raw features [length, dim] carrying `code` (one-hot mean over the first CODES dims)."""
  f = rng.normal(scale=noise, size=(length, dim))
  f[:, code % CODES] += 1.0
  return f.astype(np.float32)
