"""Composition: a sequence of segments -> one clip of local rotations, root path and joints.

Segments are placed end to end (each starts where and facing how the last one
ended); pose channels are blended over BLEND_SECONDS at each boundary (linear
for heights and angles, slerp for joint rotations); the feet are planned over
the whole clip (footplan.py), the pelvis is lowered where a planted leg could
not otherwise reach its foot, legs are solved by IK, and the joints come from
skeleton.forward_kinematics, so bone lengths are exact. Finally the clip is
put on the floor: the lowest joint over the clip is at y = 0.
"""
import dataclasses
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import footplan
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic.locomotion import rotate_xz
from llamo_jax.motion import rotations
from llamo_jax.motion import skeleton

BLEND_SECONDS = 0.3


@dataclasses.dataclass
class Clip:
  """A generated clip. local_quats [T, 22, 4] (w, x, y, z), root_pos [T, 3], joints [T, 22, 3]."""
  local_quats: np.ndarray
  root_pos: np.ndarray
  joints: np.ndarray
  segments: list[dict[str, Any]]
  fps: float
  planted: np.ndarray  # [T, 2] bool, feet planted by the plan (left, right)


def _blend_concat(parts: list[np.ndarray], width: int,
                  mix: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
  """Concatenate along axis 0, cross-fading `width` frames around each boundary."""
  out = np.concatenate(parts, axis=0)
  start = 0
  for prev, nxt in zip(parts, parts[1:]):
    b = start + len(prev)
    w = int(min(width, len(prev), len(nxt)))
    if w >= 2:
      frames = np.arange(b - w // 2, b + w - w // 2)
      a = prev[np.clip(frames - start, 0, len(prev) - 1)]
      c = nxt[np.clip(frames - b, 0, len(nxt) - 1)]
      wt = easing.min_jerk((frames - (b - w / 2) + 0.5) / w)
      out[frames] = mix(a, c, wt)
    start = b
  return out


def _lerp(a, b, w):
  return a + (b - a) * w.reshape(w.shape + (1,) * (a.ndim - 1))


def _slerp(a, b, w):
  return rotations.slerp(a, b, w.reshape(w.shape + (1,) * (a.ndim - 1)))


def _reachable_height(pelvis_y, root_xz, root_rot, plan, fps):
  """Lowers the pelvis (smoothly) wherever a planted leg could not reach its ankle target."""
  b = rig.body()
  limit = np.full_like(pelvis_y, np.inf)
  for foot in (0, 1):
    hip = root_rot @ b.hip_offset[foot]
    d = np.linalg.norm(plan.ankle[:, foot, [0, 2]] - (root_xz + hip[:, [0, 2]]), axis=-1)
    reach = rig.MAX_REACH * b.leg[foot]
    top = plan.ankle[:, foot, 1] + np.sqrt(np.maximum(reach * reach - d * d, 0.0)) - hip[:, 1]
    limit = np.where(plan.planted[:, foot], np.minimum(limit, top), limit)
  if not np.isfinite(limit).any():
    return pelvis_y
  capped = np.minimum(limit, pelvis_y + 1.0)
  r = max(1, int(round(0.15 * fps)))
  smooth = ndimage.gaussian_filter1d(ndimage.minimum_filter1d(capped, 2 * r + 1, mode="nearest"),
                                     r / 2.5, mode="nearest")
  k = 0.008
  soft = -k * np.logaddexp(-pelvis_y / k, -smooth / k)
  return np.minimum(soft, limit)


def compose(segments: list[segment.Segment], fps: float) -> Clip:
  """Joins segments into a clip (see module doc)."""
  if not segments:
    raise ValueError("compose needs at least one segment")
  for prev, nxt in zip(segments, segments[1:]):
    seated_start = nxt.attrs["action"] == "stand_up"
    if (prev.end_state == "seated") != seated_start:
      raise ValueError(f"{nxt.attrs['action']} cannot follow {prev.attrs['action']} "
                       f"(which ends {prev.end_state})")
  xz_parts, heading_parts, swings, spans = [], [], [], []
  pos, yaw, start = np.zeros(2), 0.0, 0
  for seg in segments:
    xz = pos + rotate_xz(seg.root_xz, np.full(seg.n, yaw))
    hd = yaw + seg.heading
    xz_parts.append(xz)
    heading_parts.append(hd)
    swings += [dataclasses.replace(s, start=s.start + start, end=s.end + start) for s in seg.swings]
    spans.append((start, start + seg.n))
    pos, yaw, start = xz[-1], hd[-1], start + seg.n
  root_xz = np.concatenate(xz_parts)
  heading = np.concatenate(heading_parts)
  width = int(round(BLEND_SECONDS * fps))
  height = _blend_concat([s.height for s in segments], width, _lerp)
  tilt = _blend_concat([s.tilt for s in segments], width, _lerp)
  upper = _blend_concat([s.upper for s in segments], width, _slerp)

  plan = footplan.plan(root_xz, heading, swings, fps)
  root_rot = (rig.yaw_rotation(heading + tilt[:, 2]) @ rig.axis_rotation(0, tilt[:, 0])
              @ rig.axis_rotation(2, tilt[:, 1]))
  b = rig.body()
  pelvis_y = _reachable_height(b.standing_height + height, root_xz, root_rot, plan, fps)
  root_pos = np.stack([root_xz[:, 0], pelvis_y, root_xz[:, 1]], axis=-1)

  foot_rot = rig.yaw_rotation(plan.yaw) @ rig.axis_rotation(0, plan.pitch)
  # Knees point between where the pelvis and the foot face, a little outwards.
  pole_yaw = heading[:, None] + 0.5 * easing.wrap_angle(plan.yaw - heading[:, None])
  pole_local = np.array([[0.15, 0.0, 1.0], [-0.15, 0.0, 1.0]])
  pole_xz = rotate_xz(np.broadcast_to(pole_local[None, :, [0, 2]], pole_yaw.shape + (2,)), pole_yaw)
  knee_pole = np.stack([pole_xz[..., 0], np.zeros_like(pole_yaw), pole_xz[..., 1]], -1)

  n = heading.shape[0]
  local = np.broadcast_to(np.eye(3), (n, 22, 3, 3)).copy()
  local[:, 0] = root_rot
  local[:, list(rig.UPPER_JOINTS)] = rotations.quat_to_matrix(upper)
  rig.pose_legs(local, root_pos, root_rot, plan.ankle, foot_rot, knee_pole)
  quats = rig.to_local_quats(local)
  joints = np.asarray(skeleton.forward_kinematics(quats, root_pos, b.offsets), np.float64)
  floor = joints[..., 1].min()
  root_pos[:, 1] -= floor
  joints[..., 1] -= floor

  records = []
  for seg, (a, e) in zip(segments, spans):
    rec = dict(seg.attrs)
    rec["distance"] = round(float(np.linalg.norm(root_xz[e - 1] - root_xz[a])), 3)
    rec["angle"] = round(float(abs(np.degrees(heading[e - 1] - heading[a]))), 1)
    rec["start"], rec["end"] = int(a), int(e)
    rec["duration"] = round((e - a) / fps, 2)
    records.append(rec)
  return Clip(local_quats=quats, root_pos=root_pos, joints=joints, segments=records, fps=fps,
              planted=plan.planted)
