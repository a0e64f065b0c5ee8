"""HumanML3D's 263-dim motion features (20 fps, 22 joints), reproducing the released pipeline.

Layout of one row t (features of a clip of T joint frames have T-1 rows):
  [0]       root yaw velocity as arcsin of the y component of r_{t+1} r_t^-1, i.e.
            HALF the yaw increment from frame t to t+1.
  [1:3]     root xz velocity p_{t+1} - p_t rotated by r_{t+1} (the NEXT frame's facing).
  [3]       root height of frame t.
  [4:67]    joints 1..21 of frame t relative to the root's xz, rotated by r_t ("ric").
  [67:193]  6D ("cols": first two matrix columns) of the IK rotations of joints 1..21.
  [193:259] velocities p_{t+1} - p_t of all 22 joints rotated by r_t.
  [259:263] foot contacts (left 7, 10; right 8, 11): 1 where the squared displacement
            from frame t to t+1 is below `feet_thre`.
Released files: new_joint_vecs/ID.npy has T-1 rows for a source clip of T frames, and
new_joints/ID.npy is `features_to_joints` of those rows (T-1 frames, frame t from row t),
so the released joints lack the source's last frame. joints_to_features(new_joints)
therefore gives one row fewer, and rows within ~80 frames (4 sigma of the facing
smoothing) of the end differ slightly; with the last frame restored (from the last
row's joint velocities) every row reproduces (tests/motion/test_humanml3d.py).

Here r_t is the root "facing" quaternion that rotates frame t's facing direction onto
+Z (it removes the heading). It comes from the released IK: forward = up x across with
across = (p[l_hip] - p[r_hip]) + (p[r_sho] - p[l_sho]) (the released hip term has this
sign, opposite to the canonicalisation step), Gaussian-smoothed over time (sigma 20
frames, edges repeated), and r_0 forced to the identity.

Before the features are taken, the clip is retargeted to the target skeleton (every
bone rescaled to `skeleton.BONE_LENGTHS` along its observed direction, the root path
scaled by the leg-length ratio), put on the floor (min y over all frames and joints is
0), moved so frame 0's root is at the xz origin and rotated about +Y so that frame 0
faces +Z, facing from across = (p[r_hip] - p[l_hip]) + (p[r_sho] - p[l_sho]), unsmoothed.
"""
from __future__ import annotations

import os
from typing import Any

from etils import epath
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from llamo_jax.core import paths
from llamo_jax.motion import rotations
from llamo_jax.motion import skeleton

Array = Any  # np.ndarray | jax.Array

DIM = 263
FPS = 20
# Where a HumanML3D-layout folder keeps these features and their statistics.
FEATURE_DIR = "new_joint_vecs"
MEAN_FILE, STD_FILE = "Mean.npy", "Std.npy"
J = skeleton.NUM_JOINTS
FEET_THRESHOLD = 0.002
FACING_SMOOTH_SIGMA = 20.0
# Feature groups (name -> slice); Std.npy holds one value per group.
GROUPS = {
    "root_rot_vel": slice(0, 1),
    "root_lin_vel": slice(1, 3),
    "root_y": slice(3, 4),
    "ric": slice(4, 4 + 3 * (J - 1)),
    "rot6d": slice(4 + 3 * (J - 1), 4 + 9 * (J - 1)),
    "local_vel": slice(4 + 9 * (J - 1), 4 + 9 * (J - 1) + 3 * J),
    "contacts": slice(4 + 9 * (J - 1) + 3 * J, DIM),
}
_R_HIP, _L_HIP, _R_SHO, _L_SHO = skeleton.FACE_JOINTS
_UP = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])


def _check_joints(joints: np.ndarray) -> np.ndarray:
  joints = np.asarray(joints, dtype=np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (J, 3):
    raise ValueError(f"joints must have shape [T, {J}, 3], got {joints.shape}")
  if len(joints) < 2:
    raise ValueError(f"need at least 2 frames to form 263-dim features, got {len(joints)}")
  if not np.all(np.isfinite(joints)):
    raise ValueError("joints contain NaN or inf")
  return joints


def retarget(joints: np.ndarray, bone_lengths: np.ndarray = skeleton.BONE_LENGTHS) -> np.ndarray:
  """HumanML3D's `uniform_skeleton`: [T,22,3] -> same motion on bones of `bone_lengths`.

  Every bone keeps its observed direction and gets the target length; the root path
  is scaled by target / source right-leg length (knee + shin bones of frame 0). This
  equals the released IK-then-FK, whose shortest-arc rotations preserve directions.
  """
  joints = _check_joints(joints)
  src_len = skeleton.bone_lengths(joints[0])
  scale = (bone_lengths[5] + bone_lengths[8]) / (src_len[5] + src_len[8])
  out = np.empty_like(joints)
  out[:, 0] = joints[:, 0] * scale
  for j in range(1, J):
    p = skeleton.PARENTS[j]
    bone = joints[:, j] - joints[:, p]
    bone = bone / np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-12)
    out[:, j] = out[:, p] + bone_lengths[j] * bone
  return out


def _forward_from_across(across: np.ndarray) -> np.ndarray:
  forward = np.cross(_UP, across)
  return forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)


def facing_quats(joints: np.ndarray, smooth_sigma: float = FACING_SMOOTH_SIGMA) -> np.ndarray:
  """Root facing quaternions r_t [T,4] of the released IK (see module doc), r_0 = identity."""
  across = (joints[:, _L_HIP] - joints[:, _R_HIP]) + (joints[:, _R_SHO] - joints[:, _L_SHO])
  across = across / np.maximum(np.linalg.norm(across, axis=-1, keepdims=True), 1e-12)
  forward = np.cross(_UP, across)
  if smooth_sigma > 0:
    forward = ndimage.gaussian_filter1d(forward, smooth_sigma, axis=0, mode="nearest")
  forward = forward / np.maximum(np.linalg.norm(forward, axis=-1, keepdims=True), 1e-12)
  quats = rotations.quat_between(forward, np.broadcast_to(_Z, forward.shape))
  quats[0] = (1.0, 0.0, 0.0, 0.0)
  return quats


def ik_rotations(joints: np.ndarray, root_quats: np.ndarray) -> np.ndarray:
  """The released IK's per-joint quaternions [T,22,4] (HumanML3D's own convention).

  Quaternion j (j >= 1) belongs to the bone parent(j) -> j: along each kinematic
  chain, R starts at the root quaternion (for the arm chains too, which start at
  spine3) and joint c of the chain gets R^-1 q, q = shortest arc from RAW_OFFSETS[c]
  to the observed bone direction (both global); then R = q. These are not the local
  rotations of `skeleton.forward_kinematics`; they exist to reproduce the released
  rotation block.
  """
  quats = np.zeros(joints.shape[:-1] + (4,))
  quats[:, 0] = root_quats
  for chain in skeleton.KINEMATIC_CHAINS:
    acc = root_quats
    for a, b in zip(chain[:-1], chain[1:]):
      bone = joints[:, b] - joints[:, a]
      arc = rotations.quat_between(np.broadcast_to(skeleton.RAW_OFFSETS[b], bone.shape), bone)
      quats[:, b] = rotations.quat_mul(rotations.quat_conjugate(acc), arc)
      acc = arc
  return quats


def canonicalize(joints: np.ndarray) -> np.ndarray:
  """Retarget, put on the floor, frame-0 root at the xz origin facing +Z: [T,22,3] -> [T,22,3]."""
  joints = retarget(joints)
  joints[..., 1] -= joints[..., 1].min()
  joints = joints - joints[0, 0] * np.array([1.0, 0.0, 1.0])
  across = (joints[0, _R_HIP] - joints[0, _L_HIP]) + (joints[0, _R_SHO] - joints[0, _L_SHO])
  align = rotations.quat_between(_forward_from_across(across), _Z)
  return rotations.quat_rotate(align, joints)


def joints_to_features(joints: np.ndarray, feet_thre: float = FEET_THRESHOLD) -> np.ndarray:
  """Global joints [T,22,3] (metres, Y up, 20 fps) -> HumanML3D features [T-1, 263] float32."""
  pos = canonicalize(joints)
  n = len(pos) - 1

  step = pos[1:] - pos[:-1]
  sq = np.sum(step[:, list(skeleton.FOOT_JOINTS)] ** 2, axis=-1)
  contacts = (sq < feet_thre).astype(np.float64)  # [T-1, 4]: L7, L10, R8, R11

  r_rot = facing_quats(pos)
  rot6d = rotations.matrix_to_6d(rotations.quat_to_matrix(ik_rotations(pos, r_rot)), "cols")
  root_vel = rotations.quat_rotate(r_rot[1:], pos[1:, 0] - pos[:-1, 0])
  rot_vel = rotations.quat_mul(r_rot[1:], rotations.quat_conjugate(r_rot[:-1]))
  ric = rotations.quat_rotate(r_rot[:, None], pos - pos[:, :1] * np.array([1.0, 0.0, 1.0]))
  local_vel = rotations.quat_rotate(r_rot[:-1, None], step)

  feats = np.concatenate([
      np.arcsin(np.clip(rot_vel[:, 2:3], -1.0, 1.0)), root_vel[:, [0, 2]], pos[:-1, 0, 1:2],
      ric[:-1, 1:].reshape(n, -1), rot6d[:-1, 1:].reshape(n, -1), local_vel.reshape(n, -1),
      contacts], axis=-1)
  return feats.astype(np.float32)


def _features_to_joints(f: Array, xp) -> Array:
  if f.ndim != 2 or f.shape[-1] != DIM:
    raise ValueError(f"263-dim features must have shape [T, {DIM}], got {tuple(f.shape)}")
  zero = xp.zeros_like(f[:1, 0])
  # Yaw half-angle of frame t: sum of the increments of rows 0..t-1.
  half = xp.cumsum(xp.concatenate([zero, f[:-1, 0]]), axis=0)
  undo = xp.stack([xp.cos(half), xp.zeros_like(half), -xp.sin(half), xp.zeros_like(half)], axis=-1)
  col0 = xp.zeros_like(f[:, :1])
  vel = xp.concatenate([f[:, 1:2], col0, f[:, 2:3]], axis=-1)  # (vx, 0, vz) of row t
  # Root xz of frame t sums the velocities of rows 0..t-1; row t-1's is in frame t's facing.
  vel = xp.concatenate([xp.zeros_like(vel[:1]), vel[:-1]], axis=0)
  root = xp.cumsum(rotations.quat_rotate(undo, vel), axis=0)
  root = xp.stack([root[:, 0], f[:, 3], root[:, 2]], axis=-1)
  ric = f[:, GROUPS["ric"]].reshape(f.shape[0], J - 1, 3)
  others = rotations.quat_rotate(undo[:, None], ric)
  others = others + (root * xp.asarray([1.0, 0.0, 1.0], dtype=root.dtype))[:, None]
  return xp.concatenate([root[:, None], others], axis=1)


def features_to_joints(f: np.ndarray) -> np.ndarray:
  """HumanML3D features [T,263] -> joints [T,22,3] (the released `recover_from_ric`), float32."""
  return _features_to_joints(np.asarray(f, dtype=np.float64), np).astype(np.float32)


def features_to_joints_jax(f: Array) -> Array:
  """Differentiable jax twin of `features_to_joints` ([T,263] -> [T,22,3]; vmap for batches)."""
  return _features_to_joints(jnp.asarray(f), jnp)


def group_std(std: np.ndarray) -> np.ndarray:
  """Per-dimension std [263] of a dataset -> HumanML3D's Std: the mean std of each group, broadcast.

  The released Std.npy is exactly this (no extra per-group factors: every group is
  divided by 1.0), as checked against the released clip's Std.npy being constant
  within each group.
  """
  std = np.asarray(std, dtype=np.float64)
  if std.shape != (DIM,):
    raise ValueError(f"std must have shape [{DIM}], got {std.shape}")
  out = np.empty_like(std)
  for sl in GROUPS.values():
    out[sl] = std[sl].mean()
  return out


def load_mean_std(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads Mean.npy and Std.npy ([263] each) from a HumanML3D-layout folder (any epath)."""
  directory = epath.Path(directory)
  arrays = []
  for name in (MEAN_FILE, STD_FILE):
    path = directory / name
    if not path.is_file():
      raise FileNotFoundError(f"{path} not found; a HumanML3D folder needs Mean.npy and Std.npy "
                              "(compute them from the training features with group_std)")
    arr = paths.load_npy(path).astype(np.float32)
    if arr.shape != (DIM,):
      raise ValueError(f"{path} has shape {arr.shape}, expected ({DIM},) for 263-dim features")
    arrays.append(arr)
  mean, std = arrays
  if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
    raise ValueError(f"{directory}: Mean/Std must be finite with Std > 0 everywhere")
  return mean, std


def normalize(f: Array, mean: Array, std: Array) -> Array:
  """(f - mean) / std, numpy or jax."""
  return (f - mean) / std


def denormalize(f: Array, mean: Array, std: Array) -> Array:
  """f * std + mean, numpy or jax."""
  return f * std + mean
