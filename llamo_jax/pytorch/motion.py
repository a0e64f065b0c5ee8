"""Motion features -> global joint positions [T,22,3], and joints -> BVH; numpy only.

Ports of `motion.humanml3d.features_to_joints` (hml263, the released `recover_from_ric`)
and `motion.rep272.to_joints` (mm272, MotionStreamer's recovery), and of
`motion.bvh.export.motion_from_joints` + `motion.bvh.format.format_bvh` (the skeleton
itself travels in the export's config.json, from motion/skeleton.py); see those modules
for the layouts. tests/pytorch/test_parity.py checks them against the JAX package's.
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


# ------------------------------------------------------------------ BVH

LEAF_EXTENSION = 0.5  # End Sites continue the parent bone by half (motion/bvh/export.py)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _arc_matrix(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Shortest-arc rotation matrices [T,3,3] turning direction u [T,3] onto v [T,3]."""
  u, v = _unit(u), _unit(v)
  w = 1.0 + np.sum(u * v, axis=-1, keepdims=True)
  ortho = np.where(np.abs(u[..., :1]) < 0.9, np.cross(u, [1.0, 0.0, 0.0]), np.cross(u, [0.0, 1.0, 0.0]))
  opposite = w < 1e-7
  q = _unit(np.concatenate([np.where(opposite, 0.0, w), np.where(opposite, ortho, np.cross(u, v))], -1))
  w, x, y, z = (q[..., i] for i in range(4))
  return np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def _kabsch(rest_dirs: np.ndarray, observed: np.ndarray) -> np.ndarray:
  cov = np.einsum("...ki,kj->...ij", _unit(observed), rest_dirs)
  u, _, vt = np.linalg.svd(cov)
  fix = np.ones(cov.shape[:-1])
  fix[..., -1] = np.sign(np.linalg.det(u @ vt))
  return (u * fix[..., None, :]) @ vt


def inverse_kinematics(joints: np.ndarray, parents, raw_offsets: np.ndarray) -> np.ndarray:
  """Local rotation matrices [T,J,3,3] of joints [T,J,3] (skeleton.inverse_kinematics' rule:
  shortest arc for one child, best fit of all children for several, identity for leaves)."""
  t, j_count = joints.shape[:2]
  children = [[c for c in range(j_count) if parents[c] == j] for j in range(j_count)]
  glob = [None] * j_count
  local = np.broadcast_to(np.eye(3), (t, j_count, 3, 3)).copy()
  for j in range(j_count):
    parent_rot = glob[parents[j]] if j > 0 else np.broadcast_to(np.eye(3), (t, 3, 3))
    if not children[j]:
      glob[j] = parent_rot
      continue
    bones = joints[:, children[j]] - joints[:, j:j + 1]
    if len(children[j]) == 1:
      bone_local = np.einsum("tji,tj->ti", parent_rot, bones[:, 0])
      local[:, j] = _arc_matrix(np.broadcast_to(raw_offsets[children[j][0]], bone_local.shape), bone_local)
      glob[j] = parent_rot @ local[:, j]
    else:
      glob[j] = _kabsch(raw_offsets[children[j]], bones)
      local[:, j] = np.swapaxes(parent_rot, -1, -2) @ glob[j]
  return local


def _euler_zxy(m: np.ndarray) -> np.ndarray:
  """Rotation matrices [...,3,3] = Rz(a) Rx(b) Ry(c) -> degrees [..., (a, b, c)]."""
  b = np.arcsin(np.clip(m[..., 2, 1], -1.0, 1.0))
  a = np.arctan2(-m[..., 0, 1], m[..., 1, 1])
  c = np.arctan2(-m[..., 2, 0], m[..., 2, 2])
  return np.degrees(np.stack([a, b, c], axis=-1))


def write_bvh(path, joints: np.ndarray, *, fps: float, skeleton: dict, precision: int = 6) -> None:
  """Writes joints [T,J,3] (metres) as a BVH of the exported skeleton (config.json "skeleton":
  joint_names, parents, raw_offsets, offsets in metres), in cm, Euler order ZXY, rotations by
  `inverse_kinematics` (as motion/bvh/export.motion_from_joints)."""
  joints = np.asarray(joints, np.float64)
  names, parents = skeleton["joint_names"], list(skeleton["parents"])
  raw, offsets = np.asarray(skeleton["raw_offsets"], np.float64), np.asarray(skeleton["offsets"], np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (len(names), 3) or not np.isfinite(joints).all():
    raise ValueError(f"joints must be finite [T, {len(names)}, 3], got shape {joints.shape}.")
  scale = 100.0  # metres -> cm
  euler = np.unwrap(_euler_zxy(inverse_kinematics(joints, parents, raw)), period=360.0, axis=0)
  fmt = f"{{:.{precision}f}}"
  vec = lambda v: " ".join(fmt.format(x) for x in v)
  lines, order = ["HIERARCHY"], []

  def emit(i: int, depth: int):
    order.append(i)
    ind = "\t" * depth
    kids = [c for c in range(len(names)) if parents[c] == i]
    root = parents[i] < 0
    lines.extend([f"{ind}{'ROOT' if root else 'JOINT'} {names[i]}", f"{ind}{{",
                  f"{ind}\tOFFSET {vec(np.zeros(3) if root else offsets[i] * scale)}",
                  f"{ind}\tCHANNELS " + ("6 Xposition Yposition Zposition " if root else "3 ")
                  + "Zrotation Xrotation Yrotation"])
    for c in kids:
      emit(c, depth + 1)
    if not kids:
      lines.extend([f"{ind}\tEnd Site", f"{ind}\t{{",
                    f"{ind}\t\tOFFSET {vec(offsets[i] * LEAF_EXTENSION * scale)}", f"{ind}\t}}"])
    lines.append(f"{ind}}}")

  emit(parents.index(-1), 0)
  cols = [joints[:, order[0]] * scale] + [euler[:, i] for i in order]
  values = np.concatenate(cols, axis=1)
  lines += ["MOTION", f"Frames: {len(joints)}", f"Frame Time: {1.0 / fps:.8f}"]
  lines += [vec(row) for row in values]
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
