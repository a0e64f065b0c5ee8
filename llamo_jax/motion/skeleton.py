"""The 22-joint SMPL skeleton of HumanML3D: names, hierarchy, rest offsets, forward kinematics.

Y is up; the rest pose (all local rotations identity) is the T-pose given by
`TARGET_OFFSETS`, the bone vectors of HumanML3D's target skeleton: raw offset
directions (docs/design.md, Motion formats) times the bone lengths measured on the released
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
NUM_JOINTS = len(JOINT_NAMES)
# Joint indices, in JOINT_NAMES order (L_FOOT / R_FOOT are the toe joints "left_foot", "right_foot").
(PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3, L_FOOT, R_FOOT,
 NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST,
 R_WRIST) = range(NUM_JOINTS)
SPINE_JOINTS = (SPINE1, SPINE2, SPINE3)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
KINEMATIC_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15),
                    (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
RAW_OFFSETS = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]], dtype=np.float64)
# Bone length from each joint to its parent, metres (joint 0 has none).
# (7 digits: HumanML3D features re-derived from joints are sensitive to rounding here.)
BONE_LENGTHS = np.array([
    0.0, 0.1030740, 0.1098834, 0.1315682, 0.3936232, 0.3901882, 0.1431902, 0.4324330, 0.4256434,
    0.0573647, 0.1433818, 0.1494191, 0.2193600, 0.1374868, 0.1433828, 0.1030392, 0.1316140,
    0.1229844, 0.2568399, 0.2630919, 0.2660118, 0.2698763])
TARGET_OFFSETS = RAW_OFFSETS * BONE_LENGTHS[:, None]
# Foot joints used for contacts: left (ankle, toe), right (ankle, toe).
LEFT_FOOT = (L_ANKLE, L_FOOT)
RIGHT_FOOT = (R_ANKLE, R_FOOT)
FOOT_JOINTS = LEFT_FOOT + RIGHT_FOOT
# Facing direction from these: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS = (R_HIP, L_HIP, R_SHOULDER, L_SHOULDER)


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


CHILDREN = tuple(tuple(c for c in range(NUM_JOINTS) if PARENTS[c] == j) for j in range(NUM_JOINTS))


def _best_rotation(rest_dirs: np.ndarray, observed: np.ndarray) -> np.ndarray:
  """Rotation [...,3,3] taking unit rest directions [K,3] closest to observed [...,K,3] (Kabsch)."""
  observed = observed / np.maximum(np.linalg.norm(observed, axis=-1, keepdims=True), 1e-12)
  cov = np.einsum("...ki,kj->...ij", observed, rest_dirs)  # sum_k v_k u_k^T
  u, _, vt = np.linalg.svd(cov)
  det = np.sign(np.linalg.det(u @ vt))
  fix = np.ones(cov.shape[:-1])
  fix[..., -1] = det
  return (u * fix[..., None, :]) @ vt


def inverse_kinematics(joints: np.ndarray) -> np.ndarray:
  """Local rotations that `forward_kinematics` turns back into these joints.

  Shortest-arc IK in the spirit of HumanML3D, in this module's convention (joint j's
  rotation turns the bones to j's children):
  - a joint with one child turns the raw offset direction of that child onto the
    observed bone direction by the shortest arc taken in the parent's frame (so the
    twist about the bone is inherited from the parent, never invented);
  - the pelvis (children: hips, spine) and spine3 (neck, collars) get the rotation
    that best fits all their children's directions at once (Kabsch); for a skeleton
    with the raw offset directions this is exact, and it gives the root its tilt
    and a facing (R_root (0,0,1)) from the hips and the spine;
  - leaves (feet, head, wrists) keep their parent's orientation (identity).
  With bone lengths matching `offsets`, forward_kinematics(inverse_kinematics(p),
  p[:, 0], offsets) reproduces p exactly when p came from forward kinematics on the
  raw directions; otherwise it is the closest pose of that skeleton.

  Note: this is NOT the quirky IK behind HumanML3D's 263-dim rotation block; that one
  lives in `humanml3d.py`, where it is needed to reproduce the released features.

  Args:
    joints: [T,22,3] global joint positions.
  Returns:
    [T,22,4] local quaternions (w,x,y,z), float64; joint 0's is the global root rotation.
  """
  joints = np.asarray(joints, dtype=np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
    raise ValueError(f"joints must have shape [T, {NUM_JOINTS}, 3], got {joints.shape}")
  if not np.all(np.isfinite(joints)):
    raise ValueError("joints contain NaN or inf")
  num_frames = joints.shape[0]
  glob = [None] * NUM_JOINTS  # global rotation matrices [T,3,3]
  local = np.zeros((num_frames, NUM_JOINTS, 4))
  for j in range(NUM_JOINTS):
    parent_rot = glob[PARENTS[j]] if j > 0 else np.broadcast_to(np.eye(3), (num_frames, 3, 3))
    children = CHILDREN[j]
    if not children:
      glob[j] = parent_rot
      local[:, j] = (1.0, 0.0, 0.0, 0.0)
      continue
    bones = joints[:, children] - joints[:, j:j + 1]  # [T,K,3]
    if len(children) == 1:
      bone_local = np.einsum("tji,tj->ti", parent_rot, bones[:, 0])  # parent^T v
      q = rotations.quat_between(np.broadcast_to(RAW_OFFSETS[children[0]], bone_local.shape), bone_local)
      glob[j] = parent_rot @ rotations.quat_to_matrix(q)
      local[:, j] = q
    else:
      glob[j] = _best_rotation(RAW_OFFSETS[list(children)], bones)
      local[:, j] = rotations.matrix_to_quat(np.swapaxes(parent_rot, -1, -2) @ glob[j])
  return local
