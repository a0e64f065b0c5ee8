"""272-dim MotionStreamer features: layout, invariances, round trips, jax twin."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.motion import rep272, rotations, skeleton
from walking_clip import walking_rotations


def _canonical(local, root):
  """What the features decode to: frame 0 at the xz origin facing +Z."""
  joints = skeleton.forward_kinematics(local, root)
  align = rotations.yaw_quat(-rep272.heading_angle(local[0, 0]))
  joints = rotations.quat_rotate(align, joints - joints[0, 0] * [1, 0, 1])
  local = local.copy()
  local[:, 0] = rotations.quat_mul(align, local[:, 0])
  return joints, local


def test_layout_and_conventions():
  local, root = walking_rotations(30, fps=30)
  f = rep272.from_rotations(local, root)
  assert f.shape == (29, 272) and f.dtype == np.float32
  np.testing.assert_allclose(f[0, 0:2], 0, atol=1e-7)  # starts at the origin ...
  np.testing.assert_allclose(f[0, 2:8], [1, 0, 0, 0, 1, 0], atol=1e-7)  # ... facing +Z
  # Walking forward at 1.1 m/s: velocity mostly along +z of the heading-removed frame (the
  # root's slight roll/pitch tilts its facing a little off the walking direction).
  np.testing.assert_allclose(np.hypot(f[1:, 0], f[1:, 1]) * 30, 1.1, rtol=1e-3)
  assert np.all(f[1:, 1] * 30 > 1.09) and np.ptp(f[1:, 0]) < 1e-6
  # Turning left at 0.8 rad/s (positive yaw about +Y): the change removes -0.8/30 more heading.
  np.testing.assert_allclose(f[1:, 2:8], np.tile(rotations.matrix_to_6d(
      rotations.quat_to_matrix(rotations.yaw_quat(-0.8 / 30)), "rows"), (28, 1)), atol=1e-6)
  # Positions: root at the xz origin; the root rotation has no heading left.
  pos = f[:, rep272.POSITIONS].reshape(29, 22, 3)
  np.testing.assert_allclose(pos[:, 0, [0, 2]], 0, atol=1e-6)
  np.testing.assert_allclose(pos[:, 0, 1], root[:-1, 1], atol=1e-6)
  root_rot = rotations.sixd_to_matrix(f[:, rep272.ROTATIONS][:, :6], "rows")
  facing = root_rot @ np.array([0.0, 0, 1])
  np.testing.assert_allclose(np.arctan2(facing[:, 0], facing[:, 2]), 0, atol=1e-6)


def test_invariant_to_floor_translation_and_heading():
  local, root = walking_rotations(20, start_heading=0.0, start_xz=(0, 0))
  moved_local, moved_root = walking_rotations(20, start_heading=2.5, start_xz=(-3, 7))
  np.testing.assert_allclose(rep272.from_rotations(local, root), rep272.from_rotations(moved_local, moved_root),
                             atol=1e-5)


def test_round_trips():
  local, root = walking_rotations(40, fps=30)
  f = rep272.from_rotations(local, root)
  joints, canon_local = _canonical(local, root)
  np.testing.assert_allclose(rep272.to_joints(f), joints[:-1], atol=1e-5)
  rec_local, rec_root = rep272.to_rotations(f)
  np.testing.assert_allclose(skeleton.forward_kinematics(rec_local, rec_root), joints[:-1], atol=1e-5)
  np.testing.assert_allclose(np.abs(np.sum(rec_local * canon_local[:-1], -1)), 1.0, atol=1e-5)
  # Velocities block: backward difference of the positions block, zero in row 0.
  vel = f[:, rep272.VELOCITIES].reshape(-1, 22, 3)
  pos = f[:, rep272.POSITIONS].reshape(-1, 22, 3)
  np.testing.assert_allclose(vel[0], 0.0)
  np.testing.assert_allclose(vel[1:], np.diff(pos, axis=0), atol=1e-6)


def _rot_y(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _motionstreamer_reference(local, root):
  """MotionStreamer's published encoding steps, written with matrices (T rows for T frames)."""
  rot = rotations.quat_to_matrix(local)
  pos = skeleton.forward_kinematics(local, root)
  pos = pos - pos[0, 0] * np.array([1.0, 0.0, 1.0])  # frame-0 root at the xz origin (heights kept here)
  root_vel = pos[1:, 0] - pos[:-1, 0]
  pos = pos - pos[:, :1] * np.array([1.0, 0.0, 1.0])  # every frame: root at the xz origin
  heading = -np.arctan2(rot[:, 0, 0, 2], rot[:, 0, 2, 2])
  remove = np.stack([_rot_y(h) for h in heading])
  change = np.stack([_rot_y(d) for d in np.diff(heading)])
  local_pos = np.einsum("tij,tkj->tki", remove, pos)
  rot[:, 0] = remove @ rot[:, 0]
  n = len(pos)
  out = np.zeros((n, 272))
  out[0, 2], out[0, 6] = 1.0, 1.0
  out[1:, 2:8] = change[:, :2, :].reshape(n - 1, 6)
  out[1:, :2] = np.einsum("tij,tj->ti", remove[:-1], root_vel)[:, [0, 2]]
  out[:, 8:74] = local_pos.reshape(n, -1)
  out[1:, 74:140] = np.diff(local_pos, axis=0).reshape(n - 1, -1)
  out[:, 140:] = rot[:, :, :2, :].reshape(n, -1)
  return out


def test_matches_motionstreamer_layout():
  local, root = walking_rotations(30, fps=30, start_heading=2.0)
  ref = _motionstreamer_reference(local, root)
  np.testing.assert_allclose(rep272.from_rotations(local, root), ref[:-1], atol=1e-5)


def test_from_joints_uses_ik_rotations():
  local, root = walking_rotations(25, fps=30)
  joints = skeleton.forward_kinematics(local, root)
  f = rep272.from_joints(joints)
  np.testing.assert_allclose(f, rep272.from_rotations(skeleton.inverse_kinematics(joints), root), atol=1e-5)
  rec_local, rec_root = rep272.to_rotations(f)
  np.testing.assert_allclose(skeleton.forward_kinematics(rec_local, rec_root), rep272.to_joints(f), atol=1e-5)


def test_jax_twin_matches_and_is_differentiable():
  local, root = walking_rotations(30, fps=30)
  f = rep272.from_rotations(local, root)
  out = jax.jit(rep272.to_joints_jax)(jnp.asarray(f))
  np.testing.assert_allclose(np.asarray(out), rep272.to_joints(f), atol=1e-5)
  grad = jax.grad(lambda x: jnp.sum(rep272.to_joints_jax(x)[-1, :, 0]))(jnp.asarray(f))
  assert np.all(np.isfinite(grad)) and np.abs(grad[:, 0]).max() > 0.5  # root velocity moves the end


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[T, 272\]"):
    rep272.to_joints(np.zeros((5, 263)))
  with pytest.raises(ValueError, match="at least 2 frames"):
    rep272.from_rotations(np.tile([1.0, 0, 0, 0], (1, 22, 1)), np.zeros((1, 3)))
