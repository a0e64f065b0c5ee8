"""Foot placement: where each ankle is on every frame, given the pelvis path and the swings.

Between swings a foot is planted: its ankle target does not move at all, which
is what keeps the corpus free of foot skating. A landing foot is placed at its
neutral spot (under its hip, toes along the heading) as of `lead / 2` seconds
after touchdown, so a stance is centred under the hip whatever the speed,
direction or turn. Swing feet travel between footprints with min-jerk.
"""
import dataclasses

import numpy as np

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic.locomotion import rotate_xz

TOE_OUT = 0.08  # rad; feet point slightly outwards.


@dataclasses.dataclass
class FootPlan:
  ankle: np.ndarray  # [T, 2, 3] world ankle targets (left, right)
  yaw: np.ndarray  # [T, 2] foot yaw
  pitch: np.ndarray  # [T, 2] foot pitch (+ = toes down)
  planted: np.ndarray  # [T, 2] bool


def plan(root_xz: np.ndarray, heading: np.ndarray, swings: list[segment.Swing],
         fps: float) -> FootPlan:
  """Ankle targets for a clip. root_xz [T, 2], heading [T]; swings in clip frames."""
  n = heading.shape[0]
  b = rig.body()
  ankle = np.zeros((n, 2, 3))
  yaw = np.zeros((n, 2))
  pitch = np.full((n, 2), b.foot_pitch)
  planted = np.ones((n, 2), bool)
  for foot in (0, 1):
    sign = rig.SIDE_SIGN[foot]
    hip_xz = b.hip_offset[foot, [0, 2]]
    own = sorted((s for s in swings if s.foot == foot), key=lambda s: s.start)
    for prev, nxt in zip(own, own[1:]):
      if nxt.start <= prev.end:
        raise ValueError(f"foot {foot}: swings {prev.start}..{prev.end} and "
                         f"{nxt.start}..{nxt.end} leave no frame planted between them")

    def footprint(frame):
      xz = root_xz[frame] + rotate_xz(hip_xz, heading[frame])
      return xz, heading[frame] + sign * TOE_OUT

    # Stance intervals [a, e): before the first swing, between swings, after the last.
    bounds = [0] + [x for s in own for x in (s.start, s.end)] + [n]
    prints = []
    for k in range(len(own) + 1):
      a, e = bounds[2 * k], bounds[2 * k + 1]
      if k == 0:
        frame = 0
      elif own[k - 1].same_spot:
        prints.append(prints[-1])
        frame = None
      else:
        frame = min(a + int(round(0.5 * own[k - 1].lead * fps)), max(e - 1, a))
      if frame is not None:
        xz, fy = footprint(frame)
        if k > 0 and own[k - 1].land is not None:
          xz = xz + rotate_xz(np.asarray(own[k - 1].land, np.float64), heading[frame])
        prints.append((xz, fy))
      xz, fy = prints[-1]
      ankle[a:e, foot] = (xz[0], rig.ANKLE_HEIGHT, xz[1])
      yaw[a:e, foot] = fy
    length = b.foot[foot]
    toe_floor = rig.ANKLE_HEIGHT - length * np.sin(b.foot_pitch)
    for k, s in enumerate(own):
      if s.hold_pitch:
        # Heel up, toes where a flat foot's toes would be: the ankle pivots up and back about them.
        a, e = s.end, bounds[2 * k + 3]
        (xz, fy), fp = prints[k + 1], b.foot_pitch + s.hold_pitch
        toe = xz + length * np.cos(b.foot_pitch) * np.array([np.sin(fy), np.cos(fy)])
        back = toe - length * np.cos(fp) * np.array([np.sin(fy), np.cos(fy)])
        ankle[a:e, foot] = (back[0], toe_floor + length * np.sin(fp), back[1])
        pitch[a:e, foot] = fp
    for k, s in enumerate(own):
      # The swing moves the TOE: with no progress yet, a rising pitch peels the
      # heel off the floor about the planted toe (toe-off) instead of sliding it.
      (xz0, y0), (xz1, y1) = prints[k], prints[k + 1]
      toe0 = xz0 + length * np.cos(b.foot_pitch) * np.array([np.sin(y0), np.cos(y0)])
      toe1 = xz1 + length * np.cos(b.foot_pitch) * np.array([np.sin(y1), np.cos(y1)])
      u = segment.swing_u(s.end - s.start)
      prog = easing.min_jerk((u - 0.2) / 0.6) if s.progress is None else s.progress
      fy = y0 + easing.wrap_angle(y1 - y0) * prog
      fp = b.foot_pitch + np.maximum(s.pitch, 0.0)
      toe = toe0 + (toe1 - toe0) * prog[:, None] + rotate_xz(s.lift[:, [0, 2]], heading[s.start:s.end])
      # Mid-swing the foot travels with the pelvis rather than on a fixed
      # schedule, so a fast body never leaves it behind or outruns it.
      p0, p1 = root_xz[max(s.start - 1, 0)], root_xz[min(s.end, n - 1)]
      drift = root_xz[s.start:s.end] - (p0 + (p1 - p0) * prog[:, None])
      toe = toe + easing.bump((u - 0.15) / 0.6)[:, None] * drift
      ankle[s.start:s.end, foot, 0] = toe[:, 0] - length * np.cos(fp) * np.sin(fy)
      ankle[s.start:s.end, foot, 1] = toe_floor + s.lift[:, 1] + length * np.sin(fp)
      ankle[s.start:s.end, foot, 2] = toe[:, 1] - length * np.cos(fp) * np.cos(fy)
      yaw[s.start:s.end, foot] = fy
      pitch[s.start:s.end, foot] = fp
      planted[s.start:s.end, foot] = False
  return FootPlan(ankle=ankle, yaw=yaw, pitch=pitch, planted=planted)
