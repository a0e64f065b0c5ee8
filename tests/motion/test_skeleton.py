"""The 22-joint skeleton: FK keeps bone lengths, matches the released clip's skeleton."""
import jax.numpy as jnp
import numpy as np

from llamo_jax.motion import rotations, skeleton


def test_rest_pose_is_the_target_skeleton():
  joints = skeleton.forward_kinematics(np.tile([1.0, 0, 0, 0], (22, 1)), np.zeros(3))
  np.testing.assert_allclose(joints[1] - joints[0], skeleton.TARGET_OFFSETS[1])
  np.testing.assert_allclose(skeleton.bone_lengths(joints), skeleton.BONE_LENGTHS, atol=1e-12)
  assert joints[12, 1] > joints[9, 1] > joints[0, 1] > joints[4, 1] > joints[7, 1], "neck > spine3 > pelvis > knee > ankle"


def test_fk_preserves_bone_lengths_and_matches_jax():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(10, 22, 4))
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  root = rng.normal(size=(10, 3))
  joints = skeleton.forward_kinematics(q, root)
  np.testing.assert_allclose(skeleton.bone_lengths(joints), np.tile(skeleton.BONE_LENGTHS, (10, 1)), atol=1e-12)
  np.testing.assert_allclose(joints[:, 0], root)
  jax_joints = skeleton.forward_kinematics(jnp.asarray(q, jnp.float32), jnp.asarray(root, jnp.float32))
  np.testing.assert_allclose(np.asarray(jax_joints), joints, atol=1e-5)


def test_root_rotation_turns_the_whole_body():
  q = np.tile([1.0, 0, 0, 0], (22, 1))
  q[0] = rotations.yaw_quat(np.pi / 2)
  joints = skeleton.forward_kinematics(q, np.zeros(3))
  # Left hip is at +X in the rest pose; after a +90 deg yaw about Y it is at -Z.
  np.testing.assert_allclose(joints[1], [0, 0, -skeleton.BONE_LENGTHS[1]], atol=1e-12)


def test_bone_lengths_match_the_released_clip(humanml3d_clip):
  joints = np.load(humanml3d_clip / "new_joints_012314.npy")
  np.testing.assert_allclose(skeleton.bone_lengths(joints), np.tile(skeleton.BONE_LENGTHS, (len(joints), 1)), atol=1e-4)
