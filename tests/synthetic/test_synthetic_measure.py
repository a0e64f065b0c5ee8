"""Attributes tell the truth: every segment of random clips, measured back from its joints."""
import numpy as np
import pytest

from llamo_jax.synthetic import compose
from llamo_jax.synthetic import measure
from llamo_jax.synthetic import program

FPS = 20


@pytest.fixture(scope="module")
def segments():
  rng = np.random.default_rng(5)
  out = []
  for _ in range(60):
    clip = compose.compose(program.sample_segments(rng, FPS, 40, 196), FPS)
    for rec in clip.segments:
      out.append((rec, clip.joints[rec["start"]:rec["end"]]))
  return out


def test_every_action_is_covered(segments):
  assert {r["action"] for r, _ in segments} >= set(program.ACTION_WEIGHTS) - {"stand_up"}


def test_measured_matches_recorded(segments):
  for rec, joints in segments:
    got = measure.measure(joints, FPS, rec["action"])
    a = rec["action"]
    where = f"{rec} measured {got}"
    if a in ("walk", "jog", "run"):
      # The pelvis path is the recorded one; the body sways a few cm around it.
      assert got["distance"] == pytest.approx(rec["distance"], abs=0.1), where
      if not rec["side"]:
        assert got["direction"] == rec["direction"], where
        assert abs(got["angle"]) < 15, where
      else:
        assert got["turn_side"] == rec["side"], where
        assert abs(got["angle"]) == pytest.approx(rec["angle"], abs=15), where
    elif a in ("turn", "spin"):
      assert abs(got["angle"]) == pytest.approx(rec["angle"], abs=12), where
      assert got["turn_side"] == rec["side"], where
      if a == "spin":
        assert got["count"] == rec["count"], where
    elif a == "jump":
      assert got["count"] == rec["count"], where
      if rec["direction"] == "forward":
        assert got["direction"] == "forward", where
    elif a in ("squat", "clap"):
      assert got["count"] == rec["count"], where
    elif a in ("kick", "punch"):
      assert (got["side"], got["count"]) == (rec["side"], rec["count"]), where
    elif a in ("wave", "raise"):
      assert got["side"] == rec["side"], where
    elif a in ("sit_down", "stand_up"):
      assert got["seated_change"] == ("down" if a == "sit_down" else "up"), where
    if a not in ("walk", "jog", "run", "jump", "sit_down", "stand_up"):
      assert got["distance"] < 0.15, where  # on-the-spot actions stay on the spot


def test_measure_rejects_bad_shapes():
  with pytest.raises(ValueError, match=r"joints \[T, 22, 3\]"):
    measure.measure(np.zeros((10, 21, 3)), FPS, "walk")
