"""Left/right mirroring: an involution on joints, exact features, swapped words, and real left/right motions."""
import json

import numpy as np
import pytest

from llamo_jax.eval import action_checks
from llamo_jax.motion import mirror
from llamo_jax.motion import representation as representation_lib
from llamo_jax.motion import skeleton
from llamo_jax.synthetic import compose
from llamo_jax.synthetic import program

FPS = 20


def _clip(action, side, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(200):
    seg = program.build(rng, FPS, action)
    if seg.attrs.get("side") == side:
      return compose.compose([seg], FPS).joints
  raise AssertionError(f"no {action} segment with side={side} in 200 draws")


def test_joint_permutation_swaps_every_left_joint_with_its_right_twin():
  perm = mirror.MIRROR_JOINTS
  assert sorted(perm) == list(range(skeleton.NUM_JOINTS))
  assert all(perm[perm[j]] == j for j in perm)
  assert perm[skeleton.L_WRIST] == skeleton.R_WRIST and perm[skeleton.PELVIS] == skeleton.PELVIS
  assert perm[skeleton.L_FOOT] == skeleton.R_FOOT and perm[skeleton.HEAD] == skeleton.HEAD


def test_mirroring_twice_is_the_identity():
  joints = _clip("wave", "left")
  once = mirror.mirror_joints(joints)
  assert not np.allclose(once, joints)
  np.testing.assert_array_equal(mirror.mirror_joints(once), joints)
  assert mirror.mirror_text(mirror.mirror_text("Turns left, then waves the right hand.")) == (
      "Turns left, then waves the right hand.")


@pytest.mark.parametrize("action, check", [("wave", "wave side={}"), ("turn", "turn turn_side={} angle=45")])
def test_a_mirrored_left_motion_measures_as_right(action, check):
  joints = _clip(action, "left")
  assert action_checks.check(joints, FPS, check.format("left"))["ok"]
  mirrored = mirror.mirror_joints(joints)
  assert action_checks.check(mirrored, FPS, check.format("right"))["ok"]
  assert not action_checks.check(mirrored, FPS, check.format("left"))["ok"]


@pytest.mark.parametrize("name", representation_lib.NAMES)
def test_mirrored_features_are_the_features_of_the_mirrored_joints(name):
  rep = representation_lib.get_representation(name)
  joints = _clip("wave", "left")
  feats = mirror.mirror_features(joints, name)
  np.testing.assert_allclose(feats, rep.from_joints(mirror.mirror_joints(joints)), atol=1e-6)
  back = np.asarray(rep.to_joints(feats))
  # The decoded mirror is the mirror of the decoded clip (up to the representation's round trip).
  np.testing.assert_allclose(back, np.asarray(rep.to_joints(rep.from_joints(mirror.mirror_joints(joints)))),
                             atol=1e-5)


def test_words_and_attributes():
  assert mirror.mirror_text("A person turns Left and spins clockwise.") == (
      "A person turns Right and spins counterclockwise.")
  assert mirror.mirror_text("a person walks forward.#a/DET person/NOUN turn/VERB left/ADJ#0.0#0.0") == (
      "a person walks forward.#a/DET person/NOUN turn/VERB right/ADJ#0.0#0.0")
  assert mirror.mirror_text("leftover bright") == "leftover bright"
  attrs = json.dumps({"segments": [{"action": "wave", "side": "left", "angle": 90.0},
                                   {"action": "walk", "direction": "right", "count": None}]})
  out = json.loads(mirror.mirror_attributes(attrs))
  assert [s.get("side") or s.get("direction") for s in out["segments"]] == ["right", "left"]
  assert out["segments"][0]["angle"] == 90.0
  with pytest.raises(ValueError, match=r"joints \[..., 22, 3\]"):
    mirror.mirror_joints(np.zeros((4, 21, 3)))
