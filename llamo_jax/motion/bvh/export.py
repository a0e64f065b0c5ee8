"""Export of our motions as BVH files of our 22-joint hierarchy.

`motion_from_rotations` writes local joint rotations and the root trajectory
as Euler channels on the target skeleton (`skeleton.TARGET_OFFSETS`);
`motion_from_joints` gets those rotations from joint positions by inverse
kinematics. `format.write_bvh` writes the result.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from llamo_jax.motion import skeleton
from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.motion.bvh.format import BvhJoint, BvhMotion
from llamo_jax.motion.skeleton import NUM_JOINTS, PELVIS

# End Sites of our leaf joints (head top, toe tips, finger tips), as fractions
# of the parent bone continued; only cosmetic (BVH viewers draw them).
_LEAF_EXTENSION = 0.5


def motion_from_rotations(local_quats: np.ndarray, root_pos: np.ndarray, *, fps: float,
                          unit: str = "cm", order: str = "ZXY",
                          offsets: np.ndarray | None = None) -> BvhMotion:
  """A BVH of our 22-joint hierarchy from local rotations and the root trajectory.

  Args:
    local_quats: [T, 22, 4] (w, x, y, z) rotations relative to the parent, as
      `skeleton.forward_kinematics` takes them.
    root_pos: [T, 3] root (pelvis) positions in metres.
    fps: frame rate written as Frame Time = 1 / fps.
    unit: "cm" or "m" (any of `format.UNITS`) for OFFSETs and root positions.
    order: Euler order of the rotation channels, e.g. "ZXY" or "XYZ"
      (written as Zrotation Xrotation Yrotation, meaning Rz @ Rx @ Ry).
    offsets: [22, 3] bone offsets in metres (default skeleton.TARGET_OFFSETS).
  """
  local_quats = np.asarray(local_quats, np.float64)
  root_pos = np.asarray(root_pos, np.float64)
  if local_quats.ndim != 3 or local_quats.shape[1:] != (NUM_JOINTS, 4):
    raise ValueError(f"local_quats must be [T, 22, 4], got {local_quats.shape}.")
  if root_pos.shape != (local_quats.shape[0], 3):
    raise ValueError(f"root_pos must be [T, 3] with T={local_quats.shape[0]}, got {root_pos.shape}.")
  if unit not in bvh_format.UNITS:
    raise ValueError(f"unit must be one of {', '.join(bvh_format.UNITS)}, got {unit!r}.")
  order = order.upper()
  if sorted(order) != ["X", "Y", "Z"]:
    raise ValueError(f"order must be a permutation of XYZ, got {order!r}.")
  offsets = np.asarray(skeleton.TARGET_OFFSETS if offsets is None else offsets, np.float64)
  scale = 1.0 / bvh_format.UNITS[unit]
  num_frames = local_quats.shape[0]
  quats = local_quats / np.linalg.norm(local_quats, axis=-1, keepdims=True)
  xyzw = np.concatenate([quats[..., 1:], quats[..., :1]], axis=-1).reshape(-1, 4)
  with warnings.catch_warnings():
    # Gimbal lock only makes the angle split non-unique; the rotation stays exact.
    warnings.simplefilter("ignore", UserWarning)
    euler = Rotation.from_quat(xyzw).as_euler(order, degrees=True)
  # Unwrapping keeps curves continuous for animation tools; each elementary
  # rotation is 360-periodic, so the rotation does not change.
  euler = np.unwrap(euler.reshape(num_frames, NUM_JOINTS, 3), period=360.0, axis=0)

  parents = np.asarray(skeleton.PARENTS)
  has_child = np.zeros(NUM_JOINTS, bool)
  has_child[parents[parents >= 0]] = True
  rot_channels = tuple(f"{a}rotation" for a in order)
  joints = []
  for i, name in enumerate(skeleton.JOINT_NAMES):
    p = int(parents[i])
    end = None if has_child[i] else offsets[i] * _LEAF_EXTENSION * scale
    channels = (bvh_format.POSITION_CHANNELS + rot_channels) if p < 0 else rot_channels
    joints.append(BvhJoint(name=name, parent=p, offset=np.zeros(3) if p < 0 else offsets[i] * scale,
                           channels=channels, end_site=end))
  # Reorder depth-first so channel columns follow the file's joint order.
  order_df = _depth_first(parents)
  remap = {old: new for new, old in enumerate(order_df)}
  joints = [dataclasses.replace(joints[old], parent=remap.get(joints[old].parent, -1))
            for old in order_df]
  cols = []
  for old in order_df:
    if parents[old] < 0:
      cols.append(root_pos * scale)
    cols.append(euler[:, old])
  return BvhMotion(joints=tuple(joints), frame_time=1.0 / fps,
                   values=np.concatenate(cols, axis=1))


def _depth_first(parents: np.ndarray) -> list[int]:
  out = []

  def visit(i):
    out.append(i)
    for c in np.nonzero(parents == i)[0]:
      visit(int(c))

  visit(int(np.nonzero(parents < 0)[0][0]))
  return out


def motion_from_joints(joints: np.ndarray, *, fps: float, unit: str = "cm",
                       order: str = "ZXY") -> BvhMotion:
  """A BVH of our hierarchy from joint positions [T, 22, 3] (metres) via inverse kinematics.

  The BVH holds the rotations of `skeleton.inverse_kinematics(joints)` on the
  target skeleton, so it reproduces `skeleton.forward_kinematics` of those
  rotations (bone lengths become TARGET_OFFSETS'), not `joints` exactly.
  """
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
    raise ValueError(f"joints must be [T, 22, 3], got {joints.shape}.")
  local_quats = skeleton.inverse_kinematics(joints)
  return motion_from_rotations(np.asarray(local_quats), joints[:, PELVIS], fps=fps, unit=unit,
                               order=order)
