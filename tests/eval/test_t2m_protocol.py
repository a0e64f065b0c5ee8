"""The T2M protocol with a deterministic fake evaluator: crops, skips, repeats, FID under noise."""
import numpy as np
import pytest

from llamo_jax.eval import t2m_protocol as tp
from tests.eval.fake_evaluator import FakeEvaluator, clip_features


def make_clips(n=40, seed=0, lengths=(60, 199), noise=0.05):
  rng = np.random.default_rng(seed)
  return [tp.EvalClip(f"{i:03d}", clip_features(i, int(rng.integers(*lengths)), rng, noise=noise),
                      (f"a person does clip {i}", f"someone performs clip {i} again")) for i in range(n)]


def test_protocol_crop():
  rng = np.random.default_rng(0)
  f = np.arange(99, dtype=np.float32)[:, None]
  lengths, starts = [], []
  for _ in range(3000):
    c = tp.crop_motion(f, rng, "protocol", 4)
    lengths.append(len(c))
    starts.append(int(c[0, 0]))
    np.testing.assert_array_equal(c[:, 0], np.arange(c[0, 0], c[0, 0] + len(c)))  # contiguous window
  assert set(lengths) == {96, 92}
  assert np.mean(np.array(lengths) == 92) == pytest.approx(1 / 3, abs=0.03)
  assert max(starts) == 7 and min(starts) == 0
  np.testing.assert_array_equal(tp.crop_motion(f, None, "none", 4), f[:96])


def test_real_motion_row_is_near_perfect_and_reproducible():
  ev = FakeEvaluator()
  clips = make_clips()
  a = tp.evaluate_t2m(ev, clips, num_repeats=3, progress=False)
  b = tp.evaluate_t2m(ev, clips, num_repeats=3, progress=False)
  assert a == b
  assert a["r_precision"]["top1"]["mean"] == 1.0 and a["r_precision"]["top3"]["ci95"] == 0.0
  assert a["fid"]["mean"] < 0.05
  assert a["protocol"]["num_clips"] == 40 and a["protocol"]["notes"]  # 40 < 300 diversity pairs
  assert set(a) == {"fid", "r_precision", "mm_dist", "diversity", "protocol"}  # no multimodality given


def test_shuffled_captions_lose_r_precision_and_multimodality():
  ev = FakeEvaluator()
  clips = make_clips()
  wrong = [tp.EvalClip(c.clip_id, c.features, clips[(i + 1) % len(clips)].captions) for i, c in enumerate(clips)]
  rng = np.random.default_rng(3)
  mm = [[clip_features(i, 80, rng) for _ in range(30)] for i in range(5)]
  m = tp.evaluate_t2m(ev, clips, wrong, multimodal=mm, num_repeats=2, progress=False)
  assert m["r_precision"]["top3"]["mean"] < 0.3
  assert m["fid"]["mean"] < 0.1  # the same motions
  assert m["multimodality"]["mean"] > 0


def test_fid_grows_with_noise_on_real_motions():
  ev = FakeEvaluator()
  clips = make_clips()
  rng = np.random.default_rng(1)
  fids = []
  for sigma in (0.0, 0.05, 0.2, 0.5, 1.0):
    noisy = [tp.EvalClip(c.clip_id, c.features + rng.normal(scale=sigma, size=c.features.shape).astype(np.float32),
                         c.captions) for c in clips]
    fids.append(tp.evaluate_t2m(ev, clips, noisy, num_repeats=2, crop="none", progress=False)["fid"]["mean"])
  assert fids[0] == pytest.approx(0.0, abs=1e-6)
  assert all(b > a for a, b in zip(fids, fids[1:])), fids


def test_bad_clips_are_counted_or_refused():
  ev = FakeEvaluator()
  clips = make_clips(n=34)
  nan = clips[0].features.copy()
  nan[3] = np.nan
  bad = [tp.EvalClip("nan", nan, ("clip 0",)), tp.EvalClip("long", clip_features(1, 250, np.random.default_rng(0)),
                                                              ("clip 1",))]
  skips = tp.Skips()
  m = tp.evaluate_t2m(ev, clips + bad, num_repeats=1, skips=skips, progress=False)
  assert m["protocol"]["skipped"]["by_reason"] == {"non_finite": 1, "too_long": 1}
  assert {d["id"] for d in m["protocol"]["skipped"]["clips"]} == {"nan", "long"}
  with pytest.raises(ValueError, match="at least 32.*non_finite: 1"):
    tp.evaluate_t2m(ev, clips[:31] + bad, num_repeats=1, progress=False)
  with pytest.raises(ValueError, match="clip 000 .*mm272"):
    tp.evaluate_t2m(FakeEvaluator("mm272"), clips, num_repeats=1, progress=False)
  # crop=none keeps whole clips of up to 196 frames only
  skips = tp.Skips()
  tp.select_clips([tp.EvalClip("197", np.zeros((197, 263)), ("x",))], ev, "none", skips, "g")
  assert skips.counts == {"too_long": 1}


def test_embeddings_are_deterministic_without_crop():
  ev = FakeEvaluator()
  clips = make_clips(n=5)
  a = tp.generated_embeddings(ev, clips, "none", seed=0)
  b = tp.generated_embeddings(ev, clips, "none", seed=9)
  np.testing.assert_array_equal(a["motion"], b["motion"])
  assert list(a["captions"]) == [c.captions[0] for c in clips]
  assert a["text"].shape == (5, 16) and list(a["ids"]) == [c.clip_id for c in clips]


def test_regenerate_scores_a_fresh_set_every_repeat_after_the_first():
  """regenerate(i) supplies repetition i's generated set: fresh noise per repeat widens the interval."""
  ev = FakeEvaluator()
  clips = make_clips()
  calls = []

  def noisy(seed):
    rng = np.random.default_rng(seed)
    return [tp.EvalClip(c.clip_id, c.features + rng.normal(scale=0.3, size=c.features.shape).astype(np.float32),
                        c.captions) for c in clips]

  def regenerate(i):
    calls.append(i)
    return noisy(100 + i)

  once = tp.evaluate_t2m(ev, clips, noisy(100), num_repeats=4, crop="none", progress=False)
  again = tp.evaluate_t2m(ev, clips, noisy(100), num_repeats=4, crop="none", progress=False, regenerate=regenerate)
  assert calls == [1, 2, 3]
  assert once["protocol"]["regenerated"] is False and again["protocol"]["regenerated"] is True
  assert once["fid"]["ci95"] == 0.0 and again["fid"]["ci95"] > 0.0  # crop=none: only regeneration varies FID
