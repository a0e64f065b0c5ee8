"""The 22-joint SMPL skeleton of HumanML3D: names, hierarchy, rest offsets, forward kinematics.

Y is up; the rest pose (all local rotations identity) is the T-pose given by
`TARGET_OFFSETS`, the bone vectors of HumanML3D's target skeleton: raw offset
directions (DESIGN.md section 3) times the bone lengths measured on the released
clip 012314 (constant over its frames to 3e-7 m).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from llamo_jax.motion import rotations

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist")
NUM_JOINTS = 22
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
KINEMATIC_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15),
                    (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], dtype=np.float64)
# Bone length from each joint to its parent, metres (joint 0 has none).
BONE_LENGTHS = np.array([
    0.0, 0.1031, 0.1099, 0.1316, 0.3936, 0.3902, 0.1432, 0.4324, 0.4256, 0.0574, 0.1434, 0.1494,
    0.2194, 0.1375, 0.1434, 0.1030, 0.1316, 0.1230, 0.2568, 0.2631, 0.2660, 0.2699])
TARGET_OFFSETS = RAW_OFFSETS * BONE_LENGTHS[:, None]
# Foot joints used for contacts: left (ankle, toe), right (ankle, toe).
LEFT_FOOT = (7, 10)
RIGHT_FOOT = (8, 11)
FOOT_JOINTS = LEFT_FOOT + RIGHT_FOOT
# Facing direction from these: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS = (2, 1, 17, 16)


def forward_kinematics(local_quats: Any, root_pos: Any, offsets: Any = TARGET_OFFSETS) -> Any:
  """Global joint positions from local rotations.

  Args:
    local_quats: [...,22,4] (w,x,y,z); joint j's rotation relative to its parent's
      frame (joint 0: the global root rotation). It rotates the bones of j's children:
      G_j = G_parent(j) R_j and p_j = p_parent(j) + G_parent(j) offsets[j].
    root_pos: [...,3] pelvis position.
    offsets: [22,3] rest-pose bone vectors.
  Returns:
    [...,22,3] joint positions (numpy or jax, as the inputs).
  """
  xp = rotations._xp(local_quats, root_pos)  # pylint: disable=protected-access
  local = rotations.quat_to_matrix(local_quats)
  offsets = xp.asarray(offsets, dtype=local.dtype)
  glob = [local[..., 0, :, :]]
  pos = [xp.asarray(root_pos, dtype=local.dtype)]
  for j in range(1, NUM_JOINTS):
    p = PARENTS[j]
    pos.append(pos[p] + xp.einsum("...ij,j->...i", glob[p], offsets[j]))
    glob.append(glob[p] @ local[..., j, :, :])
  return xp.stack(pos, axis=-2)


def bone_lengths(joints: Any) -> Any:
  """[...,22,3] -> [...,22] distance of each joint to its parent (0 for the root)."""
  xp = rotations._xp(joints)  # pylint: disable=protected-access
  parents = xp.asarray((0,) + PARENTS[1:])
  return xp.linalg.norm(joints - joints[..., parents, :], axis=-1)
