"""skeleton.inverse_kinematics: FK of the IK rotations gives the joints back."""
import numpy as np
import pytest

from llamo_jax.motion import rotations, skeleton
from walking_clip import walking_joints, walking_rotations


def test_fk_of_ik_reproduces_random_poses():
  rng = np.random.default_rng(0)
  q = rotations.axis_angle_to_quat(rng.normal(size=(30, 22, 3)) * 0.7)
  joints = skeleton.forward_kinematics(q, rng.normal(size=(30, 3)))
  local = skeleton.inverse_kinematics(joints)
  np.testing.assert_allclose(np.linalg.norm(local, axis=-1), 1.0, atol=1e-12)
  np.testing.assert_allclose(skeleton.forward_kinematics(local, joints[:, 0]), joints, atol=1e-9)


def test_rest_pose_gives_identity_and_root_facing():
  rest = skeleton.forward_kinematics(np.tile([1.0, 0, 0, 0], (1, 22, 1)), np.zeros((1, 3)))
  np.testing.assert_allclose(skeleton.inverse_kinematics(rest)[0], np.tile([1.0, 0, 0, 0], (22, 1)), atol=1e-9)
  q = np.tile([1.0, 0, 0, 0], (1, 22, 1))
  q[0, 0] = rotations.yaw_quat(1.0)
  local = skeleton.inverse_kinematics(skeleton.forward_kinematics(q, np.zeros((1, 3))))
  facing = rotations.quat_rotate(local[0, 0], np.array([0.0, 0, 1]))
  np.testing.assert_allclose(facing, [np.sin(1.0), 0, np.cos(1.0)], atol=1e-9)
  np.testing.assert_allclose(local[0, 1:], np.tile([1.0, 0, 0, 0], (21, 1)), atol=1e-9)


def test_twist_free_rotations_are_recovered():
  # Swings (no twist about a bone) and the root are recovered exactly, not just positions.
  local, root = walking_rotations(20)
  joints = skeleton.forward_kinematics(local, root)
  rec = skeleton.inverse_kinematics(joints)
  np.testing.assert_allclose(np.abs(np.sum(rec[:, 0] * local[:, 0], -1)), 1.0, atol=1e-9)
  for j in (1, 2, 4, 5):  # hips and knees rotate about x only: pure swings of -y bones
    np.testing.assert_allclose(np.abs(np.sum(rec[:, j] * local[:, j], -1)), 1.0, atol=1e-9)


def test_bad_input_raises():
  with pytest.raises(ValueError, match=r"\[T, 22, 3\]"):
    skeleton.inverse_kinematics(np.zeros((5, 21, 3)))
  bad = walking_joints(3)
  bad[1, 3, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    skeleton.inverse_kinematics(bad)
