"""Text-to-motion metrics in a text-motion evaluator's embedding space (Guo et al., HumanML3D).

All functions take embeddings (numpy, [N, D]) an evaluator produced; none knows the
evaluator. The protocol around them (crops, batches, repeats) is `eval/t2m_protocol.py`.

  FID            Frechet distance between Gaussians fitted to two sets of motion embeddings:
                 |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).
  R-precision    texts and motions in shuffled batches of 32 matched pairs; for each text,
                 the 32 motions ranked by Euclidean distance; top-k = fraction of texts whose
                 own motion is among the k nearest (top-1/2/3, cumulative). An incomplete
                 last batch is dropped, as the released evaluation's DataLoader does.
  MM-Dist        mean Euclidean distance between a text and its own motion (same batches).
  Diversity      mean distance between the motions of 300 random pairs (two draws of 300
                 distinct indices, as the released code does).
  MultiModality  per prompt with S samples, the mean distance of 10 random pairs of its
                 samples, averaged over prompts.
  mean_ci95      {"mean", "ci95"} of repeated measurements: mean and 1.96 std / sqrt(n)
                 (std with ddof 0, as the released final_evaluations.py computes it).

Dimension names: N clips, D embedding, B batch (32), P prompts, S samples per prompt.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

R_PRECISION_BATCH = 32
TOP_K = 3
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10


def distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances [N, M] between the rows of a [N, D] and b [M, D]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
  return np.sqrt(np.maximum(sq, 0.0))


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) of embeddings [N, D] (N >= 2)."""
  x = np.asarray(embeddings, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"FID needs embeddings [N >= 2, D], got shape {x.shape}.")
  return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2) (pytorch-fid's formula and fallbacks)."""
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"FID of statistics of different sizes: {mu1.shape} vs {mu2.shape}.")
  diff = mu1 - mu2
  covmean, _ = scipy.linalg.sqrtm(sigma1 @ sigma2, disp=False)
  if not np.isfinite(covmean).all():  # singular product: nudge both covariances
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrt(S1 S2).")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(reference: np.ndarray, generated: np.ndarray) -> float:
  """FID between two sets of embeddings [N, D] and [M, D]."""
  return frechet_distance(*gaussian_statistics(reference), *gaussian_statistics(generated))


def top_k_hits(distances: np.ndarray, k: int = TOP_K) -> np.ndarray:
  """[B, k] bool: column j says text i's own motion (column i) ranks within the j+1 nearest.

  distances: [B, B], row i = text i against every motion of the batch. Ties rank in index
  order (a stable sort), as the released code's argsort does.
  """
  order = np.argsort(distances, axis=1, kind="stable")[:, :k]
  own = order == np.arange(len(distances))[:, None]
  return np.cumsum(own, axis=1) > 0


def r_precision_mm_dist(texts: np.ndarray, motions: np.ndarray, rng: np.random.Generator,
                        batch_size: int = R_PRECISION_BATCH, k: int = TOP_K
                        ) -> tuple[np.ndarray, float]:
  """(top-1..k accuracy [k], MM-Dist) over shuffled batches of matched pairs (row i with row i).

  Only full batches count; fewer than `batch_size` pairs is an error.
  """
  n = len(texts)
  if len(motions) != n:
    raise ValueError(f"R-precision needs matched pairs: {n} texts but {len(motions)} motions.")
  if n < batch_size:
    raise ValueError(f"R-precision ranks each text among {batch_size} motions; only {n} clips remain. "
                     f"Evaluate at least {batch_size} clips (a larger split, or fewer skips).")
  order = rng.permutation(n)
  hits, matched, count = np.zeros(k), 0.0, 0
  for start in range(0, n - batch_size + 1, batch_size):
    idx = order[start:start + batch_size]
    dist = distance_matrix(texts[idx], motions[idx])
    hits += top_k_hits(dist, k).sum(0)
    matched += np.trace(dist)
    count += batch_size
  return hits / count, matched / count


def diversity(embeddings: np.ndarray, rng: np.random.Generator, num_pairs: int = DIVERSITY_PAIRS) -> float:
  """Mean distance between `num_pairs` random pairs of rows (each side drawn without replacement)."""
  n = len(embeddings)
  if n < num_pairs:
    raise ValueError(f"Diversity draws {num_pairs} distinct clips per side; only {n} clips.")
  first = rng.choice(n, num_pairs, replace=False)
  second = rng.choice(n, num_pairs, replace=False)
  return float(np.linalg.norm(embeddings[first] - embeddings[second], axis=1).mean())


def multimodality(embeddings: np.ndarray, rng: np.random.Generator,
                  num_pairs: int = MULTIMODALITY_PAIRS) -> float:
  """embeddings [P, S, D] (S samples per prompt) -> mean distance of `num_pairs` sample pairs per prompt."""
  if embeddings.ndim != 3:
    raise ValueError(f"MultiModality needs embeddings [prompts, samples, D], got {embeddings.shape}.")
  s = embeddings.shape[1]
  if s < num_pairs:
    raise ValueError(f"MultiModality draws {num_pairs} distinct samples per prompt; only {s} per prompt.")
  first = rng.choice(s, num_pairs, replace=False)
  second = rng.choice(s, num_pairs, replace=False)
  return float(np.linalg.norm(embeddings[:, first] - embeddings[:, second], axis=2).mean())


def mean_ci95(values) -> dict[str, float]:
  """{"mean", "ci95"}: the mean of repeated measurements and 1.96 std / sqrt(n)."""
  v = np.asarray(values, np.float64)
  if v.size == 0:
    raise ValueError("mean_ci95 of no values.")
  return {"mean": float(v.mean()), "ci95": float(1.96 * v.std() / np.sqrt(v.size))}
