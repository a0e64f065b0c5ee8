"""Two-bone IK and the easing profiles the synthetic rig is built on."""
import numpy as np
import pytest

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig


def _chain(root, middle, d_rest, l1, l2):
  knee = np.einsum("tij,j->ti", root, d_rest * l1)
  end = knee + np.einsum("tij,j->ti", root @ middle, d_rest * l2)
  return knee, end


@pytest.mark.parametrize("hinge", [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
def test_two_bone_ik_reaches_targets_and_bends_toward_pole(hinge):
  rng = np.random.default_rng(0)
  l1, l2 = 0.39, 0.43
  d_rest, hinge = np.array([0.0, -1.0, 0.0]), np.array(hinge)
  direction = rng.normal(size=(200, 3))
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  target = direction * rng.uniform(0.1, 0.8, size=(200, 1))
  pole = rng.normal(size=(200, 3))
  root, middle = rig.two_bone_ik(target, pole, l1, l2, (d_rest, hinge))
  knee, end = _chain(root, middle, d_rest, l1, l2)
  np.testing.assert_allclose(end, target, atol=1e-9)
  np.testing.assert_allclose(np.linalg.det(root), 1.0, atol=1e-9)
  # The knee sits on the pole's side of the root-target line.
  off_line = knee - np.sum(knee * direction, -1, keepdims=True) * direction
  assert (np.sum(off_line * pole, -1) > 0).all()
  # The middle joint is a hinge: it only rotates about its hinge axis.
  np.testing.assert_allclose(middle @ hinge, np.broadcast_to(hinge, (200, 3)), atol=1e-9)


def test_two_bone_ik_out_of_reach_points_at_target():
  target = np.array([[0.0, -2.0, 0.5]])
  root, middle = rig.two_bone_ik(target, np.array([[0.0, 0.0, 1.0]]), 0.4, 0.4,
                                 (np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0])))
  _, end = _chain(root, middle, np.array([0.0, -1.0, 0.0]), 0.4, 0.4)
  np.testing.assert_allclose(end / np.linalg.norm(end), target / np.linalg.norm(target), atol=1e-6)
  assert np.linalg.norm(end) == pytest.approx(0.8, abs=1e-4)


def test_min_jerk_and_keyframes():
  u = np.linspace(0, 1, 101)
  y = easing.min_jerk(u)
  assert y[0] == 0 and y[-1] == 1 and (np.diff(y) >= 0).all()
  t = np.linspace(0, 3, 301)
  k = easing.keyframes(t, [0.0, 1.0, 3.0], [[0.0, 1.0], [2.0, 0.0], [2.0, 5.0]])
  np.testing.assert_allclose(k[[0, 100, 300]], [[0, 1], [2, 0], [2, 5]], atol=1e-12)
  with pytest.raises(ValueError, match="increasing times"):
    easing.keyframes(t, [0.0, 0.0], [0.0, 1.0])


def test_body_is_standing_with_reachable_feet():
  b = rig.body()
  assert 0.7 < b.standing_height < 1.1
  assert (b.leg > 0.6).all() and (b.arm > 0.4).all()
