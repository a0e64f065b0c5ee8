"""The body rig: turns control signals into local joint rotations on the 22-joint skeleton.

Conventions (those of llamo_jax.motion.skeleton.forward_kinematics): Y up, the
body faces +Z at yaw 0 (its left is +X), and joint j's local rotation rotates
the bones of its children, i.e. G_j = G_parent(j) @ L_j and
p_j = p_parent(j) + G_parent(j) @ offset_j. Rotations are [..., 3, 3] matrices
here and quaternions (w, x, y, z) at the boundary.

Legs and arms are placed by analytic two-bone IK (hip-knee-ankle,
shoulder-elbow-wrist), so a planted ankle target is met exactly and bone
lengths are whatever the FK offsets say.
"""
import contextlib
import functools
from typing import Iterator

import numpy as np

from llamo_jax.motion import rotations
from llamo_jax.motion import skeleton

# Joints whose local rotations the upper-body channel owns, in this order.
UPPER_JOINTS = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
UPPER_INDEX = {j: i for i, j in enumerate(UPPER_JOINTS)}
# Per side (0 left, 1 right): hip, knee, ankle, toe / collar, shoulder, elbow, wrist.
LEG = ((1, 4, 7, 10), (2, 5, 8, 11))
ARM = ((13, 16, 18, 20), (14, 17, 19, 21))
SIDE_SIGN = (1.0, -1.0)  # +X is the body's left.

ANKLE_HEIGHT = 0.05  # m; ankle above the floor with the foot planted (released clips: ~0.05).
STANCE_REACH = 0.99  # hip-ankle distance / leg length when standing (knee ~8 deg).
MAX_REACH = 0.995  # never ask a planted leg for more than this (knee ~6 deg).


def axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
  """Rotation by `angle` [...] radians about coordinate axis 0/1/2, [..., 3, 3]."""
  angle = np.asarray(angle, dtype=np.float64)
  aa = np.zeros(angle.shape + (3,))
  aa[..., axis] = angle
  return rotations.axis_angle_to_matrix(aa)


def yaw_rotation(yaw: np.ndarray) -> np.ndarray:
  """Rotation about +Y (positive turns the body to its left), [..., 3, 3]."""
  return axis_rotation(1, yaw)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Shortest-arc rotation [3, 3] taking unit direction src to dst."""
  src, dst = _unit(np.asarray(src, np.float64)), _unit(np.asarray(dst, np.float64))
  axis = np.cross(src, dst)
  s, c = np.linalg.norm(axis), float(np.dot(src, dst))
  if s < 1e-9:
    if c > 0:
      return np.eye(3)
    perp = _unit(np.cross(src, [1.0, 0.0, 0.0] if abs(src[0]) < 0.9 else [0.0, 1.0, 0.0]))
    return rotations.axis_angle_to_matrix(perp * np.pi)
  return rotations.axis_angle_to_matrix(axis / s * np.arctan2(s, c))


# Rest layouts (Config.layout of the corpus). "target": the pelvis's and spine3's children along
# HumanML3D's raw offset directions (hips level with the pelvis, collars level with spine3, the
# shoulders up and out from the collars), as the corpus has always been built. "human": where the
# released clips put them: hips below the pelvis and collars above spine3 (the bone vectors of clip
# 012314 in the pelvis frame and the spine3 frame, constant over its frames to 1e-5 m, as the SMPL
# body's are), shoulders level out from the collars. The bone lengths are the same in both.
LAYOUTS = ("target", "human")
_HUMAN_BONES = {1: (0.0543, -0.0840, -0.0250), 2: (-0.0663, -0.0840, -0.0250),
                13: (0.0661, 0.1196, -0.0151), 14: (-0.0777, 0.1196, -0.0151)}
_SHOULDER_DIRECTION = {"target": (0.5, 0.87, 0.0), "human": (0.99, 0.05, 0.1)}  # x: per side
_layout = ["target"]


def rest_offsets(layout: str) -> np.ndarray:
  """[22, 3] rest bone vectors of a layout (LAYOUTS); the lengths are skeleton.BONE_LENGTHS."""
  if layout not in LAYOUTS:
    raise ValueError(f"unknown rest layout {layout!r}; choose one of {LAYOUTS}")
  offsets = np.asarray(skeleton.TARGET_OFFSETS, dtype=np.float64).copy()
  if layout == "human":
    for j, v in _HUMAN_BONES.items():
      offsets[j] = _unit(np.asarray(v)) * skeleton.BONE_LENGTHS[j]
  return offsets


@contextlib.contextmanager
def rest_layout(layout: str) -> Iterator[None]:
  """Within the block, `body()` (every controller's measures and the FK offsets) has `layout`."""
  rest_offsets(layout)  # validates
  previous, _layout[0] = _layout[0], layout
  try:
    yield
  finally:
    _layout[0] = previous


def body() -> "Body":
  return _body(_layout[0])


@functools.lru_cache(maxsize=None)
def _body(layout: str) -> "Body":
  return Body(rest_offsets(layout), _SHOULDER_DIRECTION[layout])


class Body:
  """Constant measures of the skeleton that the controllers need."""

  def __init__(self, offsets: np.ndarray, shoulder_direction=(0.5, 0.87, 0.0)):
    if offsets.shape != (22, 3):
      raise ValueError(f"skeleton offsets must be [22, 3], got {offsets.shape}")
    self.offsets = offsets
    length = np.linalg.norm(offsets, axis=-1)
    self.thigh = np.array([length[4], length[5]])
    self.shin = np.array([length[7], length[8]])
    self.upper_arm = np.array([length[18], length[19]])
    self.forearm = np.array([length[20], length[21]])
    self.leg = self.thigh + self.shin
    self.arm = self.upper_arm + self.forearm
    self.foot = np.array([length[10], length[11]])
    # Hinges: knees flex about +X (shin swings back), elbows about -X (forearm forward).
    self.leg_rest = [self._rest(offsets[k], offsets[a], [1.0, 0.0, 0.0]) for _, k, a, _ in LEG]
    self.arm_rest = [self._rest(offsets[e], offsets[w], [-1.0, 0.0, 0.0]) for _, _, e, w in ARM]
    # The HumanML3D target skeleton stores head and toes pointing +Z and the
    # shoulders below the collars; these fixed rotations make the neutral
    # pose human (head up, toes forward and down, shoulders up-and-out).
    self.neck_align = _align(offsets[15], [0.0, 1.0, 0.0])
    self.toe_align = [_align(offsets[t], [0.0, 0.0, 1.0]) for _, _, _, t in LEG]
    sx, sy, sz = shoulder_direction
    self.collar_align = [
        _align(offsets[s], [sx * SIDE_SIGN[i], sy, sz]) for i, (_, s, _, _) in enumerate(ARM)]
    self.shoulder_in_chest = np.stack([
        offsets[c] + self.collar_align[i] @ offsets[s] for i, (c, s, _, _) in enumerate(ARM)])
    self.hip_offset = np.stack([offsets[1], offsets[2]])
    self.hip_half_width = float(np.mean(np.abs(self.hip_offset[:, 0])))
    # Pelvis height standing with the ankles under the hips.
    self.standing_height = float(
        ANKLE_HEIGHT + STANCE_REACH * self.leg.min() - self.hip_offset[:, 1].mean())
    self.foot_pitch = float(np.arcsin(np.clip((ANKLE_HEIGHT - 0.004) / self.foot.mean(), 0, 1)))

  @staticmethod
  def _rest(off_mid, off_end, hinge):
    d1, d2 = _unit(off_mid), _unit(off_end)
    if np.dot(d1, d2) < 1.0 - 1e-4:
      raise ValueError("two-bone IK needs the limb's two bones colinear in the rest pose; "
                       f"got directions {d1} and {d2} in skeleton.TARGET_OFFSETS")
    hinge = _unit(np.asarray(hinge) - np.dot(hinge, d1) * d1)
    return d1, hinge


def two_bone_ik(target: np.ndarray, pole: np.ndarray, l1: float, l2: float,
                rest: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Local rotations of a limb's root and middle joints that put its end at `target`.

  Args:
    target: [T, 3] end-joint position relative to the root joint, in the root
      joint's PARENT frame. Out-of-reach targets are met along their direction.
    pole: [T, 3] direction the middle joint (knee/elbow) should point to.
    l1, l2: bone lengths (root->middle, middle->end).
    rest: (rest bone direction, hinge axis) in the limb's local frame.
  Returns:
    (root local rotation [T, 3, 3], middle local rotation [T, 3, 3]).
  """
  d_rest, hinge = rest
  dist = np.linalg.norm(target, axis=-1)
  u = target / np.maximum(dist, 1e-9)[:, None]
  dist = np.clip(dist, abs(l1 - l2) + 1e-4, (l1 + l2) * (1.0 - 1e-6))
  n = np.cross(pole, u)
  # A pole (anti)parallel to the limb leaves the bend plane undefined; fall back
  # to a sideways plane rather than produce NaNs.
  weak = np.linalg.norm(n, axis=-1) < 1e-4
  if np.any(weak):
    n[weak] = np.cross(np.array([0.0, 0.0, 1.0]) + 0.3 * u[weak][:, [1, 2, 0]], u[weak])
  n = _unit(n)
  w = np.cross(u, n)
  cos_a = np.clip((l1 * l1 + dist * dist - l2 * l2) / (2 * l1 * dist), -1.0, 1.0)
  sin_a = np.sqrt(1.0 - cos_a * cos_a)
  u1 = cos_a[:, None] * u + sin_a[:, None] * w
  frame_target = np.stack([u1, n, np.cross(u1, n)], axis=-1)
  frame_rest = np.stack([d_rest, hinge, np.cross(d_rest, hinge)], axis=-1)
  root = frame_target @ frame_rest.T
  cos_g = np.clip((l1 * l1 + l2 * l2 - dist * dist) / (2 * l1 * l2), -1.0, 1.0)
  middle = rotations.axis_angle_to_matrix(hinge[None] * (np.pi - np.arccos(cos_g))[:, None])
  return root, middle


def pose_legs(local: np.ndarray, root_pos: np.ndarray, root_rot: np.ndarray,
              ankle: np.ndarray, foot_rot: np.ndarray, knee_pole: np.ndarray) -> None:
  """Fills the leg joints of `local` [T, 22, 3, 3] in place.

  Args:
    root_pos, root_rot: pelvis position [T, 3] and global rotation [T, 3, 3].
    ankle: [T, 2, 3] world ankle targets (left, right).
    foot_rot: [T, 2, 3, 3] world rotation of each foot (toes along its +Z).
    knee_pole: [T, 2, 3] world direction each knee should point to.
  """
  b = body()
  inv_root = np.swapaxes(root_rot, -1, -2)
  for side, (hip, knee, ank, toe) in enumerate(LEG):
    hip_pos = root_pos + root_rot @ b.offsets[hip]
    target = np.einsum("tij,tj->ti", inv_root, ankle[:, side] - hip_pos)
    pole = np.einsum("tij,tj->ti", inv_root, knee_pole[:, side])
    a, m = two_bone_ik(target, pole, b.thigh[side], b.shin[side], b.leg_rest[side])
    local[:, hip], local[:, knee] = a, m
    knee_global = root_rot @ a @ m
    local[:, ank] = np.swapaxes(knee_global, -1, -2) @ foot_rot[:, side] @ b.toe_align[side]
    local[:, toe] = np.eye(3)


def arm_rotations(side: int, wrist: np.ndarray, pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Shoulder and elbow local rotations [T, 3, 3] for a wrist target in the chest frame.

  Args:
    side: 0 left, 1 right.
    wrist: [T, 3] wrist position relative to the shoulder joint, chest frame.
    pole: [T, 3] elbow direction, chest frame.
  """
  b = body()
  collar = b.collar_align[side]
  return two_bone_ik(wrist @ collar, pole @ collar, b.upper_arm[side], b.forearm[side],
                     b.arm_rest[side])


def to_local_quats(local: np.ndarray) -> np.ndarray:
  """[T, 22, 3, 3] local rotation matrices -> [T, 22, 4] unit quaternions (w, x, y, z), w >= 0."""
  q = rotations.matrix_to_quat(local)
  return q * np.where(q[..., :1] < 0, -1.0, 1.0)
