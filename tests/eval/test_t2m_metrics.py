"""T2M metrics on closed forms and constructed distance matrices."""
import numpy as np
import pytest

from llamo_jax.eval import t2m_metrics as tm


def exact_samples(mean, cov, n=500, seed=0):
  """n samples whose sample mean and covariance (ddof 1) are exactly `mean`, `cov`."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, len(mean)))
  x -= x.mean(0)
  x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T   # identity covariance
  return mean + x @ np.linalg.cholesky(cov).T


def test_fid_of_identical_sets_is_zero():
  x = np.random.default_rng(0).normal(size=(200, 8))
  assert abs(tm.fid(x, x)) < 1e-8


def test_fid_of_gaussians_equals_the_formula():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(6, 6))
  cov = a @ a.T + 0.5 * np.eye(6)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  c = 2.25  # cov2 = c cov1: tr(S1 + S2 - 2 (S1 S2)^1/2) = (1 - sqrt c)^2 tr S1
  want = np.sum((mu1 - mu2) ** 2) + (1 - np.sqrt(c)) ** 2 * np.trace(cov)
  got = tm.fid(exact_samples(mu1, cov, seed=2), exact_samples(mu2, c * cov, seed=3))
  np.testing.assert_allclose(got, want, rtol=1e-7)
  # diagonal covariances: sum (mu1 - mu2)^2 + sum (s1 - s2)^2 with s the standard deviations
  s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  want = 1.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  np.testing.assert_allclose(tm.frechet_distance(np.zeros(3), np.diag(s1), np.array([1.0, 0, 0]),
                                                 np.diag(s2)), want, rtol=1e-9)


def test_fid_refuses_too_few_or_mismatched():
  with pytest.raises(ValueError, match="N >= 2"):
    tm.fid(np.zeros((1, 3)), np.zeros((5, 3)))
  with pytest.raises(ValueError, match="different sizes"):
    tm.fid(np.ones((5, 3)).cumsum(0), np.ones((5, 4)).cumsum(0))


def test_top_k_hits_on_a_constructed_distance_matrix():
  # text i's own motion (column i) ranks i+1-th
  d = np.array([[0, 1, 2, 3],
                [0, 1, 2, 3],
                [0, 1, 2, 3],
                [0, 1, 2, 3]], float)
  hits = tm.top_k_hits(d, 3)
  np.testing.assert_array_equal(hits.mean(0), [0.25, 0.5, 0.75])
  np.testing.assert_array_equal(hits[3], [False, False, False])


def test_r_precision_and_mm_dist_on_constructed_embeddings():
  n = 32
  texts = np.stack([10.0 * np.arange(n), np.zeros(n)], 1)
  rng = np.random.default_rng(0)
  same = tm.r_precision_mm_dist(texts, texts + [0.0, 3.0], rng)
  np.testing.assert_allclose(same[0], [1, 1, 1])
  np.testing.assert_allclose(same[1], 3.0)
  # motions shifted by 6 along the line: text i is 4 from motion i-1 and 6 from its own, so every
  # text but the first ranks its motion second; MM-Dist is 6
  top, mm = tm.r_precision_mm_dist(texts, texts + [6.0, 0.0], rng)
  np.testing.assert_allclose(top, [1 / n, 1, 1])
  np.testing.assert_allclose(mm, 6.0)


def test_r_precision_drops_the_incomplete_batch_and_needs_32():
  texts = np.arange(40, dtype=float)[:, None]
  top, _ = tm.r_precision_mm_dist(texts, texts, np.random.default_rng(0))
  np.testing.assert_allclose(top, [1, 1, 1])
  with pytest.raises(ValueError, match="at least 32"):
    tm.r_precision_mm_dist(texts[:31], texts[:31], np.random.default_rng(0))


def test_diversity_and_multimodality():
  rng = np.random.default_rng(0)
  assert tm.diversity(np.ones((300, 4)), rng) == 0.0
  x = rng.normal(size=(400, 4))
  r = np.random.default_rng(5)
  first, second = r.choice(400, 300, replace=False), r.choice(400, 300, replace=False)
  want = np.linalg.norm(x[first] - x[second], axis=1).mean()
  assert tm.diversity(x, np.random.default_rng(5)) == pytest.approx(want)
  with pytest.raises(ValueError, match="300"):
    tm.diversity(x[:299], rng)
  # two samples per prompt that are +-1 apart in one dim, tiled to 30: pairs are 0 or 2 apart
  samples = np.zeros((5, 30, 3))
  samples[:, ::2, 0] = 1.0
  r = np.random.default_rng(7)
  a, b = r.choice(30, 10, replace=False), r.choice(30, 10, replace=False)
  want = np.mean((a % 2) != (b % 2))
  assert tm.multimodality(samples, np.random.default_rng(7)) == pytest.approx(want)
  assert tm.multimodality(np.ones((3, 30, 2)), rng) == 0.0


def test_mean_ci95():
  got = tm.mean_ci95([1.0, 2.0, 3.0, 4.0])
  assert got["mean"] == 2.5
  assert got["ci95"] == pytest.approx(1.96 * np.sqrt(1.25) / 2)
