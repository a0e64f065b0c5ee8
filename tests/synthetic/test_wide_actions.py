"""The "wide" action set: plausible clips, captions that name the action, checks that recognise it."""
import hashlib
import json

import ml_collections
import numpy as np
import pytest

from llamo_jax.data import prepare
from llamo_jax.data import sources
from llamo_jax.eval import action_checks
from llamo_jax.motion import skeleton
from llamo_jax.synthetic import actions
from llamo_jax.synthetic import captions
from llamo_jax.synthetic import compose
from llamo_jax.synthetic import corpus
from llamo_jax.synthetic import gestures
from llamo_jax.synthetic import measure
from llamo_jax.synthetic import program

FPS = 20
NEW = ("crouch", "kneel", "bend", "stretch", "gesture")
# Clips 0-3 of the core corpus at seed 0 (joints, captions, 263 features), as generator version 1
# wrote them before action sets existed: "core" must keep writing these bytes.
CORE_DIGEST = "6adcebd19b50a75ca733e3231c99ab00b579600ab79c878f484e6ad01e64bb2f"
# Another action's expectation that each new action's motion must fail.
CONTRAST = {"crouch": "kneel pose=kneel", "kneel": "crouch pose=crouch", "bend": "crouch pose=crouch",
            "stretch": "bend pose=bend", "gesture": "stretch side=both"}


def test_core_action_set_writes_the_same_bytes_as_before():
  digest = hashlib.sha256()
  for i in range(4):
    g = corpus.generate(i, corpus.Config(num_motions=4, seed=0))
    digest.update(g.clip.joints.astype(np.float32).tobytes())
    digest.update("|".join(g.captions).encode())
    digest.update(g.feats263.tobytes())
  assert digest.hexdigest() == CORE_DIGEST


@pytest.fixture(scope="module")
def instances():
  """Three sampled instances of each new action, each composed after a short idle."""
  rng = np.random.default_rng(13)
  out = {}
  for action in NEW:
    out[action] = []
    for _ in range(3):
      seg = program.build(rng, FPS, action)
      clip = compose.compose([actions.idle(FPS, 0.5, rng), seg], FPS)
      out[action].append((clip, clip.segments[1]))
  return out


@pytest.mark.parametrize("action", NEW)
def test_new_actions_are_physically_plausible(instances, action):
  parents = np.asarray(skeleton.PARENTS)
  for clip, _ in instances[action]:
    j = clip.joints
    bones = np.linalg.norm(j[:, 1:] - j[:, parents[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(np.linalg.norm(skeleton.TARGET_OFFSETS[1:], axis=-1),
                                                      bones.shape), atol=1e-5)
    assert np.isfinite(j).all() and j[..., 1].min() >= -1e-3
    toes = j[:, [10, 11], 1]
    assert toes[clip.planted].max() < 0.01  # planted toes on the floor (tucked toes too)
    planted = clip.planted[1:] & clip.planted[:-1]
    toe_speed = np.linalg.norm(np.diff(j[:, [10, 11]][..., [0, 2]], axis=0), axis=-1) * FPS
    assert toe_speed[planted].max() < 1e-6  # planted toes never slide
    # Neither the pelvis nor the head goes through the floor or leaves the body's reach.
    assert j[:, 0, 1].min() > 0.2 and j[:, 15, 1].min() > 0.6


@pytest.mark.parametrize("action", NEW)
def test_new_actions_are_named_and_recognised(instances, action):
  rng = np.random.default_rng(0)
  for clip, record in instances[action]:
    attrs = {"segments": clip.segments, "num_frames": len(clip.joints)}
    for caption in captions.describe(clip.segments, rng, 5):
      captions.tag(caption)  # every word is in the lexicon
      assert dict(action_checks.named_actions(caption, attrs))[action], caption
    expectations = action_checks.segment_expectations(attrs)
    assert [e.split()[0] for e, _, _ in expectations] == [action]
    window = clip.joints[record["start"]:record["end"]]
    assert action_checks.check(window, FPS, expectations[0][0])["ok"], (expectations[0][0], record)
    assert not action_checks.check(window, FPS, CONTRAST[action])["ok"], record


def test_low_poses_tell_kneel_crouch_bend_and_sides_apart(instances):
  for clip, record in instances["kneel"]:
    pose, knees = measure.low_pose(clip.joints[record["start"]:record["end"]], FPS)
    assert (pose, knees) == ("kneel", record["side"])
  # A core squat and a jump stand (their pelvis drops less; a jump's flight is no crouch).
  for seg in (actions.squat(FPS, 2, 0.45, 2.0), actions.jump(FPS, 2, 0.0, 0.35)):
    clip = compose.compose([seg], FPS)
    assert measure.low_pose(clip.joints, FPS)[0] == "stand"


def test_shaking_hands_are_measured_and_one_moving_arm_is_not():
  rng = np.random.default_rng(3)
  checked = {}
  for variant in gestures.GESTURES:
    seg = gestures.gesture(FPS, variant, 1, 3, rng)
    clip = compose.compose([actions.idle(FPS, 0.5, rng), seg], FPS)
    checked[variant] = action_checks.check(clip.joints, FPS, "gesture hands=both")["ok"]
    if variant == "shake":
      attrs = {"segments": clip.segments, "num_frames": len(clip.joints)}
      assert [e for e, _, _ in action_checks.segment_expectations(attrs)] == ["gesture hands=both"]
  # The swing moves both arms too; reaching and pointing move one and hold it.
  assert checked == {"reach": False, "point": False, "swing": True, "shake": True}
  for seg in (actions.idle(FPS, 2.0, rng), program.build(rng, FPS, "wave")):
    assert not action_checks.check(compose.compose([seg], FPS).joints, FPS, "gesture hands=both")["ok"]


def test_wide_corpus_names_its_action_set_and_draws_new_actions(tmp_path):
  meta = corpus.build(tmp_path / "wide", corpus.Config(num_motions=12, seed=1, actions="wide"))
  assert meta["action_set"] == "wide"
  assert set(meta["actions"]) & set(NEW)
  assert sources.synthetic_corpus_build(tmp_path / "wide") == {"action_set": "wide", "layout": "target"}
  assert json.loads((tmp_path / "wide" / "corpus.json").read_text())["version"] == corpus.VERSION
  # A config asking for the core set does not silently train on it.
  asked = ml_collections.ConfigDict(dict(dir=str(tmp_path / "wide"), num_motions=12, seed=1, fps=20))
  with pytest.raises(ValueError, match="built with action_set 'wide'.*data.corpus.actions='core'"):
    prepare.ensure_synthetic_corpus(asked)
  asked.actions = "wide"
  assert prepare.ensure_synthetic_corpus(asked) == tmp_path / "wide"
  with pytest.raises(ValueError, match="unknown action set 'huge'"):
    corpus.build(tmp_path / "x", corpus.Config(num_motions=2, actions="huge"))
