"""Actions that take the body low and bring it back: crouch, kneel, bend over / pick up.

Part of the "wide" action set (program.ACTION_SETS): each segment starts and ends standing,
so it composes with every other action. The pelvis drops and pitches forward through the
segment's height and tilt channels; the feet stay planted except where kneeling steps a leg
back (its toes tucked under: segment.Swing.land / hold_pitch) and forward again. Sides are
0 = left, 1 = right, as in actions.py.
"""
import numpy as np

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic import upper_body

_POLE = np.array([0.5, -0.5, -0.7])  # elbows out and back while the arms work in front


def _hanging_arms(n: int, trunk_pitch: np.ndarray, extra: np.ndarray, reach: float) -> list[np.ndarray]:
  """Canonical wrist targets of arms hanging (plus `extra` rad forward) below a trunk pitched forward."""
  return [upper_body.arm_direction(upper_body.REST_FORWARD + trunk_pitch + extra, upper_body.REST_OUT)
          * reach * rig.body().arm[s] for s in (0, 1)]


def crouch(fps: float, depth: float, hold: float, lean: float, look: float) -> segment.Segment:
  """Crouch low (pelvis `depth` m down, deeper than a squat), hold `hold` s, stand up.

  lean: trunk pitch at the bottom (rad); look: head yaw while down (rad, + left).
  """
  down, up = 1.0 + 0.6 * depth, 0.9 + 0.6 * depth
  duration = 0.2 + down + hold + up + 0.25
  n, t = easing.frames(duration, fps)
  d = easing.rise_hold_fall(t, 0.2, down, hold, up)
  held = easing.window(t, 0.2 + down, 0.2 + down + hold, min(0.4, hold / 2 + 0.05))
  height = -depth * d
  root_xz = np.stack([np.zeros(n), -0.3 * depth * d], -1)
  tilt = np.zeros((n, 3))
  tilt[:, 0] = lean * d
  pitch = tilt[:, 0] + 0.3 * d
  wrists = _hanging_arms(n, pitch, np.deg2rad(55) * d, 0.8)
  upper = upper_body.upper_pose(n, wrists=wrists, poles=[np.broadcast_to(_POLE, (n, 3))] * 2,
                                spine_pitch=0.3 * d, head_pitch=-0.35 * d, head_yaw=look * held)
  attrs = {"action": "crouch", "side": None, "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, height=height, tilt=tilt, root_xz=root_xz)


def bend(fps: float, variant: str, side: str | None, depth: float, hold: float,
         twist: float) -> segment.Segment:
  """Bend forward from the hips and come back up.

  variant: "over" (legs nearly straight, hands towards the floor) or "pick" (knees bent too,
    one hand or both pick something up from the floor and bring it to the waist).
  side: "left" | "right" | "both": the hand(s) that pick ("pick" only; None for "over").
  depth: trunk pitch at the bottom (rad, 1.0-1.5: well past a squat's lean).
  twist: trunk yaw towards the picking hand / while bent (rad, + left).
  """
  if variant not in ("over", "pick"):
    raise ValueError(f"bend variant {variant!r}: choose over or pick")
  down, up = 0.9 + 0.4 * depth, 0.9 + 0.4 * depth
  duration = 0.2 + down + hold + up + 0.25
  n, t = easing.frames(duration, fps)
  d = easing.rise_hold_fall(t, 0.2, down, hold, up)
  knees = 0.05 if variant == "over" else 0.28
  hip_share = 0.6
  tilt = np.zeros((n, 3))
  tilt[:, 0] = hip_share * depth * d
  spine = (1.0 - hip_share) * depth * d
  height = -knees * d - 0.1 * np.sin(hip_share * depth * d)
  root_xz = np.stack([np.zeros(n), -(0.12 + 0.6 * knees) * np.sin(hip_share * depth * d)], -1)
  pitch = tilt[:, 0] + spine
  # Arms hang below the trunk and reach a little ahead; after a pick the hands come up holding it.
  picked = easing.keyframes(t, [0.0, 0.2 + down + hold, 0.2 + down + hold + up, t[-1] + 1.0],
                            [0, 0, 1, 1]) if variant == "pick" else np.zeros(n)
  hands = {"left": (0,), "right": (1,), "both": (0, 1)}.get(side or "", ())
  wrists = _hanging_arms(n, pitch, np.deg2rad(15) * d, upper_body.REST_REACH)
  for s in hands:
    holding = upper_body.arm_direction(np.deg2rad(45) * picked, upper_body.REST_OUT) * 0.7 * rig.body().arm[s]
    w = picked[:, None]
    wrists[s] = wrists[s] * (1.0 - w) + holding * w
  yaw = twist * easing.window(t, 0.2, 0.2 + down + hold + up, min(0.8, down))
  upper = upper_body.upper_pose(n, wrists=wrists, poles=[np.broadcast_to(_POLE, (n, 3))] * 2,
                                spine_pitch=spine, spine_yaw=yaw, head_pitch=-0.45 * d * (1 - 0.5 * (variant == "pick")))
  attrs = {"action": "bend", "variant": variant, "side": side if variant == "pick" else None,
           "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, height=height, tilt=tilt, root_xz=root_xz)


def kneel(fps: float, side: str, hold: float, step_back: float) -> segment.Segment:
  """Kneel down on one knee ("left" | "right": it steps back) or both, hold `hold` s, get up.

  The kneeling leg steps `step_back` m behind its hip and lands on tucked toes; the pelvis
  drops until that knee is on the floor. For both knees the other leg follows it back
  beside it, and on getting up the legs step forward again in reverse order.
  """
  if side not in ("left", "right", "both"):
    raise ValueError(f"kneel side {side!r}: choose left, right or both")
  order = (0, 1) if side == "left" else (1, 0) if side == "right" else (0, 1)
  legs = order if side == "both" else order[:1]
  step, low, rise = 0.6, 0.9, 0.9
  t_down = 0.2 + step * len(legs) + low
  duration = t_down + hold + rise + step * len(legs) + 0.25
  n, t = easing.frames(duration, fps)
  s_step0 = 0.2
  b = rig.body()
  knee_y = 0.09  # knee joint centre above the floor when it is down
  drop = b.standing_height - (knee_y + b.thigh.mean() - b.hip_offset[:, 1].mean())
  # Lowering starts with the first step back and ends after the last; rising mirrors it.
  lo_start, lo_end = s_step0 + 0.3, t_down
  hi_start = t_down + hold
  hi_end = hi_start + rise + step * (len(legs) - 1) + 0.3
  d = easing.keyframes(t, [0.0, lo_start, lo_end, hi_start, hi_end, t[-1] + 1.0], [0, 0, 1, 1, 0, 0])
  height = -drop * d
  # One knee: the front shin ends about vertical, so the pelvis moves back by about a thigh.
  back = step_back * (0.35 if side == "both" else 0.8)
  root_xz = np.stack([np.zeros(n), -back * d], -1)
  tilt = np.zeros((n, 3))
  lean = 0.05 if side == "both" else 0.15
  tilt[:, 0] = lean * easing.bump(np.clip((t - lo_start) / (lo_end - lo_start), 0, 1)) + lean * d * 0.4
  tuck = 1.15  # toes tucked: extra foot pitch while kneeling (rad)
  # Where a kneeling ankle goes: a shin behind the knee, the knee under the hip. A flat foot's
  # ankle lands there less the forward shift of tucking the toes under (footplan pivots about them).
  foot = b.foot.mean()
  shin_run = np.sqrt(b.shin.mean() ** 2 - (0.13 - knee_y) ** 2)
  flat_ankle_z = -back - shin_run - foot * (np.cos(b.foot_pitch) - np.cos(b.foot_pitch + tuck))
  swings = []
  for i, leg in enumerate(legs):
    for t0, going_back in ((s_step0 + i * step, True), (hi_start + rise * 0.6 + i * step, False)):
      a, e = int(round(t0 * fps)), int(round((t0 + step) * fps))
      u = segment.swing_u(e - a)
      lift = np.zeros((e - a, 3))
      lift[:, 1] = 0.06 * easing.bump(u)
      ramp = easing.min_jerk(u) if going_back else 1.0 - easing.min_jerk(u)
      pitch = tuck * ramp + 0.2 * easing.bump(u)
      # The footprint is the hip's spot at landing (frame e) plus `land`.
      land = (0.0, float(flat_ankle_z - root_xz[min(e, n - 1), 1])) if going_back else None
      swings.append(segment.Swing(foot=leg, start=a, end=e, lift=lift, pitch=pitch, lead=0.0,
                                  land=land, hold_pitch=tuck if going_back else 0.0))
  wrists = _hanging_arms(n, tilt[:, 0], np.deg2rad(20) * d, upper_body.REST_REACH)
  upper = upper_body.upper_pose(n, wrists=wrists, spine_pitch=0.1 * d, head_pitch=0.1 * d)
  attrs = {"action": "kneel", "side": side, "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, height=height, tilt=tilt, swings=swings, root_xz=root_xz)
