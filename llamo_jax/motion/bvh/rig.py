"""Forward kinematics of a BVH rig: global joint rotations and positions per frame.

Forward kinematics (`global_transforms`) follows the usual BVH reading:

  R_j = R_parent(j) @ E_j,     p_j = p_parent(j) + R_parent(j) @ t_j,

where E_j multiplies the joint's rotation channels in the order they are
listed (`Zrotation Xrotation Yrotation` gives Rz @ Rx @ Ry, i.e. intrinsic
Euler "ZXY"), angles in degrees, and t_j is the OFFSET, except that the
components a joint has position channels for (Xposition ...) are replaced by
the channel values. That is how MotionBuilder/Blender read 6-channel joints,
and the root's OFFSET is zero in nearly every file.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.motion.bvh.format import BvhMotion


def local_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Per-joint local rotations [T, J, 3, 3] and translations [T, J, 3] (file units)."""
  num_frames, num_joints = motion.num_frames, len(motion.joints)
  rot = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
  trans = np.empty((num_frames, num_joints, 3))
  for i, (j, cols) in enumerate(zip(motion.joints, motion.channel_columns())):
    trans[:, i] = j.offset
    axes, angle_cols = [], []
    for c, col in zip(j.channels, cols):
      if c in bvh_format.POSITION_CHANNELS:
        trans[:, i, bvh_format.POSITION_CHANNELS.index(c)] = motion.values[:, col]
      else:
        axes.append(c[0])
        angle_cols.append(col)
    if axes:
      # Upper-case sequence = intrinsic rotations = Rz @ Rx @ Ry for "ZXY".
      rot[:, i] = Rotation.from_euler("".join(axes), motion.values[:, angle_cols],
                                      degrees=True).as_matrix()
  return rot, trans


def global_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Global joint rotations [T, J, 3, 3] and positions [T, J, 3] (file units)."""
  local_rot, local_trans = local_transforms(motion)
  glob_rot = np.empty_like(local_rot)
  glob_pos = np.empty_like(local_trans)
  for i, j in enumerate(motion.joints):
    if j.parent < 0:
      glob_rot[:, i] = local_rot[:, i]
      glob_pos[:, i] = local_trans[:, i]
    else:
      p = j.parent
      glob_rot[:, i] = glob_rot[:, p] @ local_rot[:, i]
      glob_pos[:, i] = glob_pos[:, p] + np.einsum("tij,tj->ti", glob_rot[:, p], local_trans[:, i])
  return glob_rot, glob_pos


def global_positions(motion: BvhMotion) -> np.ndarray:
  """Global joint positions [T, J, 3] in file units."""
  return global_transforms(motion)[1]


def end_site_positions(motion: BvhMotion, glob_rot: np.ndarray, glob_pos: np.ndarray
                       ) -> dict[int, np.ndarray]:
  """{joint index: End Site position [T, 3]} for joints that have an End Site."""
  return {i: glob_pos[:, i] + glob_rot[:, i] @ j.end_site
          for i, j in enumerate(motion.joints) if j.end_site is not None}


def rest_positions(motion: BvhMotion) -> np.ndarray:
  """Rest-pose (all channels zero, OFFSETs only) positions [J + E, 3] of joints and End Sites."""
  pos = np.zeros((len(motion.joints), 3))
  for i, j in enumerate(motion.joints):
    pos[i] = j.offset + (pos[j.parent] if j.parent >= 0 else 0.0)
  ends = [pos[i] + j.end_site for i, j in enumerate(motion.joints) if j.end_site is not None]
  return np.concatenate([pos, np.reshape(ends, (-1, 3))], axis=0)
