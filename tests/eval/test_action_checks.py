"""Action checks: real synthetic motions pass the expectations of their own action and fail others."""
import json

import numpy as np
import pytest

from llamo_jax.synthetic import captions
from llamo_jax.synthetic import compose
from llamo_jax.synthetic import program
from llamo_jax.eval import action_checks

FPS = 20


def _clip(action, seed=0, **want):
  """Joints of a one-segment synthetic clip of `action` whose record has the `want` attributes."""
  rng = np.random.default_rng(seed)
  for _ in range(200):
    seg = program.build(rng, FPS, action)
    if all(seg.attrs.get(k) == v for k, v in want.items()):
      return compose.compose([seg], FPS).joints, seg.attrs
  raise AssertionError(f"no {action} segment with {want} in 200 draws")


def test_motions_pass_their_own_expectation_and_fail_the_opposite():
  joints, rec = _clip("walk", direction="forward", side=None)
  assert action_checks.check(joints, FPS, "walk direction=forward distance=0.5")["ok"], rec
  bad = action_checks.check(joints, FPS, "walk direction=backward")
  assert not bad["ok"] and bad["failed"] == ["direction: want backward, got forward"]

  joints, rec = _clip("wave", side="right")
  assert action_checks.check(joints, FPS, "wave side=right")["ok"], rec
  assert not action_checks.check(joints, FPS, "wave side=left")["ok"]

  joints, rec = _clip("turn", side="left")
  assert action_checks.check(joints, FPS, "turn turn_side=left angle=45")["ok"], rec
  assert not action_checks.check(joints, FPS, "turn turn_side=right")["ok"]

  joints, rec = _clip("jump", direction=None)
  assert action_checks.check(joints, FPS, f"jump count={rec['count']}")["ok"], rec
  assert not action_checks.check(joints, FPS, f"jump count={rec['count'] + 1}")["ok"]


def test_standing_still_satisfies_no_action():
  still = np.repeat(_clip("idle")[0][:1], 60, axis=0)
  for expect in ("walk direction=forward distance=0.5", "jump count=1", "wave side=right",
                 "turn turn_side=left angle=45", "squat count=1"):
    assert not action_checks.check(still, FPS, expect)["ok"], expect


@pytest.mark.parametrize("expect, match", [("dance", "unknown action 'dance'"),
                                           ("walk speed=3", "KEY=VALUE"),
                                           ("jump count=many", "could not convert")])
def test_bad_expectations_are_errors(expect, match):
  with pytest.raises(ValueError, match=match):
    action_checks.parse(expect)


def test_named_actions():
  attributes = json.dumps({"segments": [{"action": "turn"}, {"action": "idle"}, {"action": "punch"},
                                        {"action": "turn"}]})
  assert action_checks.named_actions("a man rotates left and then jabs twice.", attributes) == [
      ("turn", True), ("punch", True)]
  assert action_checks.named_actions("a person walks forward.", attributes) == [
      ("turn", False), ("punch", False)]
  assert action_checks.named_actions("a person walks forward.", "") == []


def test_every_caption_of_the_grammar_names_its_actions():
  """named_actions knows every word the synthetic grammar uses for an action (all its forms)."""
  rng = np.random.default_rng(0)
  for _ in range(300):
    segments = [dict(s.attrs) for s in program.sample_segments(rng, FPS, 40, 196)]
    for caption in captions.describe(segments, rng, 5):
      named = action_checks.named_actions(caption, {"segments": segments})
      assert all(ok for _, ok in named), (caption, named)


def test_check_expectations_fails_fast():
  action_checks.check_expectations(["a", "b"], ["jump count=1", "wave side=right"])
  action_checks.check_expectations(["a", "b"], [])
  with pytest.raises(ValueError, match="2 entries for 1 prompts"):
    action_checks.check_expectations(["a"], ["jump", "wave"])
  with pytest.raises(ValueError, match="unknown action 'dance'"):
    action_checks.check_expectations(["a"], ["dance"])


@pytest.fixture(scope="module")
def corpus_clips():
  """(joints, attribute record) of 30 random multi-segment synthetic clips."""
  rng = np.random.default_rng(11)
  out = []
  for _ in range(30):
    clip = compose.compose(program.sample_segments(rng, FPS, 40, 196), FPS)
    out.append((clip.joints, {"num_frames": len(clip.joints), "segments": clip.segments}))
  return out


def test_segment_expectations_follow_the_record():
  rec = {"num_frames": 100, "segments": [
      {"action": "turn", "angle": 90.0, "side": "left", "start": 0, "end": 30},
      {"action": "idle", "start": 30, "end": 40},
      {"action": "punch", "count": 4, "side": "right", "start": 40, "end": 100}]}
  assert action_checks.segment_expectations(json.dumps(rec)) == [
      ("turn turn_side=left angle=45", 0.0, 0.3), ("punch side=right count=4", 0.4, 1.0)]


def test_attribute_accuracy_of_real_motions_is_high_and_of_mismatched_low(corpus_clips):
  joints = [j for j, _ in corpus_clips]
  records = [r for _, r in corpus_clips]
  own = action_checks.attribute_accuracy(joints, records, FPS)
  assert own["segments"] > 0.9 and own["num_clips"] == 30, own
  assert set(own["per_action"]) <= set(program.ACTION_WEIGHTS) - {"idle"}
  shifted = action_checks.attribute_accuracy(joints[1:] + joints[:1], records, FPS)
  assert shifted["segments"] < own["segments"] - 0.3, shifted
  assert action_checks.attribute_accuracy([joints[0]], [{}], FPS) == {}


def test_attribute_accuracy_per_check_names_the_attribute_that_fails():
  joints, _ = _clip("walk", direction="forward", side=None)
  seg = {"action": "walk", "direction": "forward", "distance": 1.0, "start": 0, "end": len(joints)}
  right = {"num_frames": len(joints), "segments": [seg]}
  backward = {"num_frames": len(joints), "segments": [{**seg, "direction": "backward"}]}
  got = action_checks.attribute_accuracy([joints, joints], [right, backward], FPS)
  assert got["segments"] == 0.5 and got["per_action"] == {"walk": {"accuracy": 0.5, "count": 2}}
  # The backward record fails on its direction only: the distance is still walked.
  assert got["per_check"] == {"direction": {"accuracy": 0.5, "count": 2},
                              "distance": {"accuracy": 1.0, "count": 2}}
  # A window too short to measure fails every check of its segment.
  short = action_checks.attribute_accuracy([joints[:1]], [right], FPS)
  assert short["per_check"] == {"direction": {"accuracy": 0.0, "count": 1},
                                "distance": {"accuracy": 0.0, "count": 1}}


def test_caption_recall_counts_every_action_and_the_first():
  named = [[("turn", True), ("punch", False)], [("walk", False)], [], [("jump", True), ("squat", True)]]
  got = action_checks.caption_recall(named)
  assert got == {"actions": 0.6, "first_action": 2 / 3, "num_actions": 5, "num_clips": 3}
  assert action_checks.caption_recall([[], []]) == {}


def test_length_agreement():
  got = action_checks.length_agreement([100, 126, 74, 80, 200], [100, 100, 100, 100, 100])
  assert got == {"within": 0.4, "median_ratio": 1.0}
  with pytest.raises(ValueError, match="2 generated lengths for 1"):
    action_checks.length_agreement([1, 2], [3])
