"""The 272-dim motion representation of MotionStreamer (used by LLaMo), 30 fps.

Per frame t (rows 0..T-2 of a clip of T frames; J = 22 joints):

  [0:2]     root xz velocity arriving at frame t, (r_t - r_{t-1}) rotated into the
            heading-removed frame of frame t-1 (x, z). Row 0 holds the root xz of
            frame 0 itself, which is (0, 0) because clips are canonicalised.
  [2:8]     heading change into frame t as 6D ("rows": first two rows of the matrix)
            of C_t C_{t-1}^-1, where C_t = yaw(-h_t) removes frame t's heading.
            Row 0 holds C_0 itself, the identity after canonicalisation.
  [8:74]    joint positions of frame t, root moved to the xz origin and heading
            removed: C_t (p_t[j] - (r_t.x, 0, r_t.z)), J x 3.
  [74:140]  velocities of the block above, backward difference L_t - L_{t-1} of the
            heading-removed root-centred positions L (so the root's own xz motion and
            the turning are not in it); row 0 holds zeros.
  [140:272] local joint rotations of frame t as 6D ("rows"); joint 0's rotation is
            the root's global rotation with the heading removed, C_t R_root.

Conventions.
- Y is up. Rotation matrices act on column vectors.
- Heading h_t = yaw of the root rotation: the root's facing direction
  f = R_root (0, 0, 1) projected on the floor, h = atan2(f.x, f.z), so h = 0 faces
  +Z and h = +pi/2 faces +X (a positive rotation about +Y). yaw(a) is the rotation
  by a about +Y (`rotations.yaw_quat`). A root pitched straight up or down has no
  facing on the floor; then h = 0 (atan2(0, 0)).
- Canonicalisation: before encoding, the clip is moved so that frame 0's root is at
  the xz origin (height kept) and rotated about +Y so that frame 0 faces +Z. The
  features are therefore invariant to translation on the floor and to heading, and
  decoding starts at the origin facing +Z.
- Decoding (`to_joints`) matches MotionStreamer's recovery: C_t is the running
  product D_t ... D_0 of the rows' heading changes (row 0's included), and the root
  xz is v_0 + sum_{s=1..t} C_{s-1}^-1 v_s. Positions come from the positions block,
  not from forward kinematics, so `to_joints` needs no skeleton.
- The joint-velocity block is redundant for decoding (it is a training signal).
- MotionStreamer's own files keep T rows for T frames (every block above is a
  backward difference or per-frame, row 0 fixed); `from_rotations` returns their first
  T-1 rows, matching HumanML3D's T-1, so a clip of T frames decodes to its first T-1.
  Heights are kept as given (MotionStreamer also puts the clip on the floor first).
  Real MotionStreamer rotations are relative to the SMPL rest pose, ours to the
  T-pose of `skeleton.TARGET_OFFSETS`; positions (and `to_joints`) do not depend on it.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.motion import rotations
from llamo_jax.motion import skeleton

Array = Any  # np.ndarray | jax.Array

DIM = 272
FPS = 30
# Where a HumanML3D-layout folder keeps these features and their statistics.
FEATURE_DIR = "vecs272"
MEAN_FILE, STD_FILE = "Mean272.npy", "Std272.npy"
J = skeleton.NUM_JOINTS
# Slices of the feature vector.
ROOT_VEL = slice(0, 2)
HEADING_CHANGE = slice(2, 8)
POSITIONS = slice(8, 8 + 3 * J)
VELOCITIES = slice(8 + 3 * J, 8 + 6 * J)
ROTATIONS = slice(8 + 6 * J, 8 + 12 * J)


def heading_angle(root_quats: Array) -> Array:
  """[...,4] root rotations -> [...] heading (yaw) in radians; 0 faces +Z, +pi/2 faces +X."""
  xp = rotations._xp(root_quats)  # pylint: disable=protected-access
  forward = rotations.quat_rotate(root_quats, xp.asarray([0.0, 0.0, 1.0], dtype=root_quats.dtype))
  return xp.arctan2(forward[..., 0], forward[..., 2])


def _check_features(f: Array) -> None:
  if f.ndim != 2 or f.shape[-1] != DIM:
    raise ValueError(f"272-dim features must have shape [T, {DIM}], got {tuple(f.shape)}")


def _encode(joints: np.ndarray, local_quats: np.ndarray) -> np.ndarray:
  """Features from global joints [T,22,3] and matching local rotations [T,22,4]."""
  joints = np.asarray(joints, dtype=np.float64)
  local_quats = rotations.quat_normalize(np.asarray(local_quats, dtype=np.float64))
  if joints.ndim != 3 or joints.shape[1:] != (J, 3):
    raise ValueError(f"joints must have shape [T, {J}, 3], got {joints.shape}")
  if local_quats.shape != joints.shape[:2] + (4,):
    raise ValueError(f"local_quats must have shape [T, {J}, 4] matching joints, got {local_quats.shape}")
  if len(joints) < 2:
    raise ValueError(f"need at least 2 frames to form 272-dim features, got {len(joints)}")
  if not (np.all(np.isfinite(joints)) and np.all(np.isfinite(local_quats))):
    raise ValueError("joints / rotations contain NaN or inf")

  # Canonicalise: frame 0's root at the xz origin, facing +Z.
  heading = heading_angle(local_quats[:, 0])
  align = rotations.yaw_quat(-heading[0])
  joints = joints - joints[0, 0] * np.array([1.0, 0.0, 1.0])
  joints = rotations.quat_rotate(align, joints)
  root_quat = rotations.quat_mul(align, local_quats[:, 0])
  heading = heading_angle(root_quat)

  remove = rotations.yaw_quat(-heading)  # C_t, [T,4]
  root_xz = joints[:, 0] * np.array([1.0, 0.0, 1.0])
  positions = rotations.quat_rotate(remove[:, None], joints - root_xz[:, None])
  velocities = np.zeros_like(positions)
  velocities[1:] = positions[1:] - positions[:-1]

  root_vel = np.zeros((len(joints), 3))
  root_vel[0] = root_xz[0]  # zero after canonicalisation
  root_vel[1:] = rotations.quat_rotate(remove[:-1], root_xz[1:] - root_xz[:-1])
  change = np.concatenate([remove[:1], rotations.quat_mul(remove[1:], rotations.quat_conjugate(remove[:-1]))])
  change_6d = rotations.matrix_to_6d(rotations.quat_to_matrix(change), "rows")

  local = local_quats.copy()
  local[:, 0] = rotations.quat_mul(remove, root_quat)
  local_6d = rotations.matrix_to_6d(rotations.quat_to_matrix(local), "rows")

  n = len(joints) - 1
  feats = np.concatenate([
      root_vel[:n, [0, 2]], change_6d[:n], positions[:n].reshape(n, -1), velocities[:n].reshape(n, -1),
      local_6d[:n].reshape(n, -1)], axis=-1)
  return feats.astype(np.float32)


def from_rotations(local_quats: np.ndarray, root_pos: np.ndarray,
                   offsets: np.ndarray = skeleton.TARGET_OFFSETS) -> np.ndarray:
  """Features from local rotations.

  Args:
    local_quats: [T,22,4] (w,x,y,z) in `skeleton.forward_kinematics`'s convention.
    root_pos: [T,3] pelvis positions (metres, Y up).
    offsets: [22,3] rest bone vectors used to place the joints.
  Returns:
    [T-1, 272] float32 features (rows = frames 0..T-2).
  """
  local_quats = np.asarray(local_quats, dtype=np.float64)
  root_pos = np.asarray(root_pos, dtype=np.float64)
  if root_pos.ndim != 2 or root_pos.shape != (local_quats.shape[0], 3):
    raise ValueError(f"root_pos must have shape [T, 3] with T = {local_quats.shape[0]}, got {root_pos.shape}")
  joints = skeleton.forward_kinematics(local_quats, root_pos, offsets)
  return _encode(joints, local_quats)


def from_joints(joints: np.ndarray) -> np.ndarray:
  """Features from global joint positions [T,22,3] -> [T-1,272].

  Rotations come from `skeleton.inverse_kinematics`; positions and velocities are
  the given joints themselves (not re-placed by forward kinematics).
  """
  joints = np.asarray(joints, dtype=np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (J, 3):
    raise ValueError(f"joints must have shape [T, {J}, 3], got {joints.shape}")
  return _encode(joints, skeleton.inverse_kinematics(joints))


def _heading_frames(f: Array, xp) -> tuple[Array, Array]:
  """Running heading-removal matrices C_t [T,3,3] and root xz positions [T,3]."""
  change = rotations.sixd_to_matrix(f[:, HEADING_CHANGE], "rows")
  if xp is np:
    frames = [change[0]]
    for d in change[1:]:
      frames.append(d @ frames[-1])
    frames = np.stack(frames)
  else:
    # C_t = D_t ... D_0: an associative prefix product (later factor on the left).
    frames = jax.lax.associative_scan(lambda a, b: b @ a, change)
  zero = xp.zeros_like(f[:, :1])
  vel = xp.concatenate([f[:, 0:1], zero, f[:, 1:2]], axis=-1)
  world_vel = xp.einsum("tji,tj->ti", frames[:-1], vel[1:])  # C_{t-1}^T v_t
  root_xz = xp.cumsum(xp.concatenate([vel[:1], world_vel], axis=0), axis=0)
  return frames, root_xz


def _to_joints(f: Array, xp) -> Array:
  _check_features(f)
  frames, root_xz = _heading_frames(f, xp)
  positions = f[:, POSITIONS].reshape(f.shape[0], J, 3)
  world = xp.einsum("tji,tkj->tki", frames, positions)  # C_t^T p
  return world + root_xz[:, None, :]


def to_joints(f: np.ndarray) -> np.ndarray:
  """Features [T,272] -> global joints [T,22,3] (numpy, float32)."""
  f = np.asarray(f, dtype=np.float64)
  return _to_joints(f, np).astype(np.float32)


def to_joints_jax(f: jax.Array) -> jax.Array:
  """Differentiable jax twin of `to_joints`: [T,272] -> [T,22,3] (batch with jax.vmap)."""
  return _to_joints(jnp.asarray(f), jnp)


def to_rotations(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Features [T,272] -> (local_quats [T,22,4] with global root rotation, root_pos [T,3])."""
  f = np.asarray(f, dtype=np.float64)
  _check_features(f)
  frames, root_xz = _heading_frames(f, np)
  local = rotations.matrix_to_quat(rotations.sixd_to_matrix(f[:, ROTATIONS].reshape(-1, J, 6), "rows"))
  restore = rotations.matrix_to_quat(np.swapaxes(frames, -1, -2))
  local[:, 0] = rotations.quat_normalize(rotations.quat_mul(restore, local[:, 0]))
  root = f[:, POSITIONS][:, :3]
  root_pos = np.einsum("tji,tj->ti", frames, root) + root_xz
  return local.astype(np.float32), root_pos.astype(np.float32)
