"""Motion features -> global joint positions [T,22,3], numpy only (no jax, no torch).

Ports of `motion.humanml3d.features_to_joints` (hml263, the released `recover_from_ric`)
and `motion.rep272.to_joints` (mm272, MotionStreamer's recovery); see those modules for
the layouts. tests/pytorch/test_parity.py checks both against them.
"""
from __future__ import annotations

import numpy as np

NUM_JOINTS = 22
DIMS = {"hml263": 263, "mm272": 272}
_RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)       # hml263: root-relative joints 1..21
_HEADING_CHANGE = slice(2, 8)                     # mm272: 6D heading change ("rows")
_POSITIONS = slice(8, 8 + 3 * NUM_JOINTS)         # mm272: heading-removed positions


def _quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Rotates v [...,3] by unit quaternions q [...,4] (w, x, y, z)."""
  w, u = q[..., :1], q[..., 1:]
  t = 2.0 * np.cross(u, v)
  return v + w * t + np.cross(u, t)


def _hml263_to_joints(f: np.ndarray) -> np.ndarray:
  half = np.cumsum(np.concatenate([np.zeros(1), f[:-1, 0]]))
  undo = np.stack([np.cos(half), np.zeros_like(half), -np.sin(half), np.zeros_like(half)], axis=-1)
  vel = np.stack([f[:, 1], np.zeros(len(f)), f[:, 2]], axis=-1)
  vel = np.concatenate([np.zeros((1, 3)), vel[:-1]])
  root = np.cumsum(_quat_rotate(undo, vel), axis=0)
  root = np.stack([root[:, 0], f[:, 3], root[:, 2]], axis=-1)
  ric = f[:, _RIC].reshape(len(f), NUM_JOINTS - 1, 3)
  others = _quat_rotate(undo[:, None], ric) + (root * np.array([1.0, 0.0, 1.0]))[:, None]
  return np.concatenate([root[:, None], others], axis=1)


def _sixd_rows_to_matrix(d6: np.ndarray) -> np.ndarray:
  a1, a2 = d6[..., :3], d6[..., 3:6]
  b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
  b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
  b2 = b2 / np.maximum(np.linalg.norm(b2, axis=-1, keepdims=True), 1e-12)
  return np.stack([b1, b2, np.cross(b1, b2)], axis=-2)


def _mm272_to_joints(f: np.ndarray) -> np.ndarray:
  change = _sixd_rows_to_matrix(f[:, _HEADING_CHANGE])
  frames = [change[0]]
  for d in change[1:]:
    frames.append(d @ frames[-1])
  frames = np.stack(frames)
  vel = np.stack([f[:, 0], np.zeros(len(f)), f[:, 1]], axis=-1)
  world_vel = np.einsum("tji,tj->ti", frames[:-1], vel[1:])
  root_xz = np.cumsum(np.concatenate([vel[:1], world_vel]), axis=0)
  positions = f[:, _POSITIONS].reshape(len(f), NUM_JOINTS, 3)
  return np.einsum("tji,tkj->tki", frames, positions) + root_xz[:, None, :]


def to_joints(features: np.ndarray, representation: str) -> np.ndarray:
  """Denormalised features [T, dim] of `representation` -> joints [T,22,3] float32."""
  if representation not in DIMS:
    raise ValueError(f"unknown motion representation {representation!r}; known: {sorted(DIMS)}.")
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or f.shape[1] != DIMS[representation]:
    raise ValueError(f"{representation} features must have shape [T, {DIMS[representation]}], "
                     f"got {f.shape}.")
  fn = _hml263_to_joints if representation == "hml263" else _mm272_to_joints
  return fn(f).astype(np.float32)
