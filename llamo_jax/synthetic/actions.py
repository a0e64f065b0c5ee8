"""Actions done on the spot: jumps, squats, arm gestures, kicks, sitting, standing idle.

Each builder returns a segment.Segment from explicit parameters (program.py
samples them). Times are in seconds; poses move between keys with min-jerk.
Sides are 0 = left, 1 = right; "both" arms where it applies.
"""
import math

import numpy as np

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic import upper_body

SIDES = ("left", "right")
GRAVITY = 9.81
SEAT_HEIGHT = 0.5  # pelvis height sitting on a chair, m


def _rest_wrist(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
  return upper_body.rest_arm(n, side)


def _hermite(s, p0, m0, p1, m1):
  s2, s3 = s * s, s * s * s
  return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1
          + (s3 - s2) * m1)


def jump(fps: float, count: int, distance: float, height: float) -> segment.Segment:
  """`count` jumps, travelling `distance` m forward in total (0 = on the spot), `height` m high."""
  crouch, absorb = 0.16, 0.14
  v0 = math.sqrt(2 * GRAVITY * height)
  flight = 2 * v0 / GRAVITY
  push = min(0.2, 2.7 * crouch / v0)
  land = min(0.25, 2.7 * absorb / v0)
  t_first, t_recover = 0.45, 0.5
  duration = t_first + count * (push + flight + land) + t_recover
  n, t = easing.frames(duration, fps)
  h = np.zeros(n)
  fwd = np.zeros(n)
  arm = np.zeros(n)  # arm raise: -1 back, +1 up
  swings = []
  cursor = t_first
  h += np.where(t < cursor, -crouch * easing.min_jerk((t - 0.05) / (cursor - 0.1)), 0.0)
  arm += np.where(t < cursor, -easing.min_jerk((t - 0.05) / (cursor - 0.1)), 0.0)
  per_jump = distance / count
  for i in range(count):
    t0, t1, t2, t3 = cursor, cursor + push, cursor + push + flight, cursor + push + flight + land
    m = (t >= t0) & (t < t1)
    s = (t[m] - t0) / push
    h[m] = _hermite(s, -crouch if i == 0 else -absorb, 0.0, 0.0, v0 * push)
    arm[m] = -1.0 + 2.0 * easing.min_jerk(s)
    m = (t >= t1) & (t < t2)
    tau = t[m] - t1
    h[m] = v0 * tau - 0.5 * GRAVITY * tau * tau
    arm[m] = 1.0 - 0.6 * easing.min_jerk(tau / flight)
    m = (t >= t2) & (t < t3)
    s = (t[m] - t2) / land
    h[m] = _hermite(s, 0.0, -v0 * land, -absorb, 0.0)
    last = i == count - 1
    arm[m] = 0.4 - (0.4 if last else 1.4) * easing.min_jerk(s)
    fwd += per_jump * easing.min_jerk((t - t0) / (t3 - t0))
    a, b = int(math.ceil(t1 * fps)), int(math.ceil(t2 * fps))
    if b - a >= 1:
      u = segment.swing_u(b - a)
      lift = np.zeros((b - a, 3))
      tt = (np.arange(a, b) / fps) - t1
      lift[:, 1] = np.maximum(v0 * tt - 0.5 * GRAVITY * tt * tt, 0.0) + 0.06 * easing.bump(u)
      prog = ((fwd[a:b] - fwd[a - 1]) / max(fwd[min(b, n - 1)] - fwd[a - 1], 1e-9)
              if per_jump > 0 else None)
      for foot in (0, 1):
        swings.append(segment.Swing(foot=foot, start=a, end=b, lift=lift.copy(),
                                    pitch=0.4 * easing.bump(u), lead=0.0,
                                    progress=None if prog is None else np.clip(prog, 0, 1)))
    cursor = t3
  m = t >= cursor
  h[m] = -absorb * (1.0 - easing.min_jerk((t[m] - cursor) / (t_recover - 0.05)))
  arm[m] = arm[m] * (1.0 - easing.min_jerk((t[m] - cursor) / (t_recover - 0.05)))
  wrists = []
  for side in (0, 1):
    reach = 0.95 * rig.body().arm[side]
    ang = upper_body.REST_FORWARD + np.where(arm < 0, 0.7 * arm, 1.9 * arm)
    wrists.append(upper_body.arm_direction(ang, upper_body.REST_OUT) * reach)
  poles = [np.broadcast_to(np.array([0.5, -0.5, -0.7]), (n, 3))] * 2
  lean = 0.5 * np.maximum(-h, 0.0) / crouch * 0.35
  upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, spine_pitch=lean)
  tilt = np.zeros((n, 3))
  tilt[:, 0] = lean
  attrs = {"action": "jump", "count": count, "direction": "forward" if distance > 0 else None,
           "side": None, "speed": None, "height": round(float(height), 2)}
  root_xz = np.stack([np.zeros(n), fwd], -1)
  return segment.Segment(root_xz=root_xz, heading=np.zeros(n), height=h, tilt=tilt, upper=upper,
                         swings=swings, attrs=attrs)


def squat(fps: float, count: int, depth: float, period: float) -> segment.Segment:
  """`count` squats, pelvis lowered by `depth` m, `period` s each."""
  duration = 0.3 + count * period + 0.3
  n, t = easing.frames(duration, fps)
  times, values = [0.0, 0.3], [0.0, 0.0]
  for i in range(count):
    base = 0.3 + i * period
    times += [base + 0.45 * period, base + 0.55 * period, base + period]
    values += [1.0, 1.0, 0.0]
  times.append(duration)
  values.append(0.0)
  d = easing.keyframes(t, times, values)
  height = -depth * d
  root_xz = np.stack([np.zeros(n), -0.35 * depth * d], -1)
  tilt = np.zeros((n, 3))
  tilt[:, 0] = 0.45 * d
  wrists = [upper_body.arm_direction(upper_body.REST_FORWARD + np.deg2rad(80) * d,
                                     upper_body.REST_OUT) * 0.97 * rig.body().arm[s]
            for s in (0, 1)]
  poles = [np.broadcast_to(np.array([0.5, -0.5, -0.7]), (n, 3))] * 2
  upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, spine_pitch=0.25 * d,
                                head_pitch=-0.2 * d)
  attrs = {"action": "squat", "count": count, "side": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, height=height, tilt=tilt, root_xz=root_xz)


def _arms(n, wrists, poles):
  out_w, out_p = [], []
  for side in (0, 1):
    w, p = _rest_wrist(n, side)
    out_w.append(wrists.get(side, w))
    out_p.append(poles.get(side, p))
  return out_w, out_p


def wave(fps: float, side: int, count: int, period: float = 0.5,
         hand_height: float = 0.36) -> segment.Segment:
  """Raise one hand beside the head and wave it `count` times, `period` s each.

  hand_height: wrist above the shoulder while waving, m.
  """
  t_up, t_down = 0.6, 0.6
  duration = t_up + count * period + t_down + 0.2
  n, t = easing.frames(duration, fps)
  rest_w, rest_p = _rest_wrist(1, side)
  raised = np.array([0.22, hand_height, 0.12])
  via = np.array([0.34, -0.12, 0.22])
  t_end = t_up + count * period
  keys = [0.0, 0.1, 0.35, t_up, t_end, t_end + 0.3, t_end + t_down, duration]
  wrist = easing.keyframes(t, keys, [rest_w[0], rest_w[0], via, raised, raised, via, rest_w[0],
                                     rest_w[0]])
  up = easing.keyframes(t, keys, [0, 0, 0.5, 1, 1, 0.5, 0, 0])
  osc = np.sin(2 * np.pi * (t - t_up) / period) * easing.window(t, t_up - 0.1, t_end + 0.1, 0.2)
  wrist[:, 0] += 0.11 * osc
  wrist[:, 2] -= 0.03 * np.abs(osc)
  raised_pole = np.array([1.0, -0.6, -0.2])
  pole = rest_p[0] + (raised_pole - rest_p[0]) * up[:, None]
  wrists, poles = _arms(n, {side: wrist}, {side: pole})
  sign = 1.0 if side == 0 else -1.0
  upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, head_yaw=0.15 * sign * up,
                                spine_roll=-0.05 * sign * up)
  attrs = {"action": "wave", "side": SIDES[side], "count": count, "direction": None, "speed": None}
  return segment.still(n, upper, attrs)


def raise_arms(fps: float, side: str, hold: float) -> segment.Segment:
  """Raise the left, right or both arms straight up, hold for `hold` s, lower them."""
  t_up, t_down = 0.8, 0.8
  duration = 0.15 + t_up + hold + t_down + 0.15
  n, t = easing.frames(duration, fps)
  keys = [0.0, 0.15, 0.15 + t_up, 0.15 + t_up + hold, 0.15 + t_up + hold + t_down, duration]
  ang = easing.keyframes(t, keys, [0, 0, 1, 1, 0, 0])
  raised = {}
  poles = {}
  for s in ((0, 1) if side == "both" else (SIDES.index(side),)):
    reach = (upper_body.REST_REACH + 0.02 * ang) * rig.body().arm[s]
    raised[s] = upper_body.arm_direction(upper_body.REST_FORWARD + np.deg2rad(160) * ang,
                                         upper_body.REST_OUT + np.deg2rad(8) * ang) * reach[:, None]
    poles[s] = np.broadcast_to(np.array([0.5, -0.5, -0.7]), (n, 3))
  wrists, pole_list = _arms(n, raised, poles)
  upper = upper_body.upper_pose(n, wrists=wrists, poles=pole_list, head_pitch=-0.15 * ang)
  attrs = {"action": "raise", "side": side, "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs)


def punch(fps: float, side: int, count: int, period: float = 0.5) -> segment.Segment:
  """Guard up, punch forward `count` times with one fist (`period` s each), guard down."""
  t_guard = 0.5
  duration = t_guard + count * period + t_guard + 0.1
  n, t = easing.frames(duration, fps)
  guard = np.array([-0.08, -0.12, 0.25])
  strike = np.array([-0.14, 0.02, 0.5])
  guard_on = easing.keyframes(t, [0, t_guard, t_guard + count * period, duration - 0.1, duration],
                              [0, 1, 1, 0, 0])
  ext = np.zeros(n)
  for i in range(count):
    base = t_guard + i * period
    ext = np.maximum(ext, easing.keyframes(t, [base, base + 0.18, base + 0.26, base + period],
                                           [0, 1, 1, 0]) * ((t >= base) & (t <= base + period)))
  wrists, poles = {}, {}
  for s in (0, 1):
    rest_w, rest_p = _rest_wrist(n, s)
    target = guard + (strike - guard) * (ext[:, None] if s == side else 0.0)
    wrists[s] = rest_w + (target - rest_w) * guard_on[:, None]
    poles[s] = rest_p + (np.array([1.0, -1.0, -0.3]) - rest_p) * guard_on[:, None]
  wrist_list, pole_list = _arms(n, wrists, poles)
  sign = 1.0 if side == 0 else -1.0
  upper = upper_body.upper_pose(n, wrists=wrist_list, poles=pole_list,
                                spine_yaw=-0.3 * sign * ext, spine_pitch=0.08 * guard_on)
  tilt = np.zeros((n, 3))
  tilt[:, 2] = -0.1 * sign * ext
  attrs = {"action": "punch", "side": SIDES[side], "count": count, "direction": None,
           "speed": None}
  return segment.still(n, upper, attrs, tilt=tilt)


def kick(fps: float, side: int, count: int, reach: float, height: float) -> segment.Segment:
  """Kick forward `count` times with one leg, the foot reaching `reach` m ahead, `height` m up."""
  period, shift = 1.0, 0.35
  duration = shift + count * period + shift
  n, t = easing.frames(duration, fps)
  stance_sign = -1.0 if side == 0 else 1.0  # weight moves over the other foot (+x = left)
  lean_keys = [0.0, shift, shift + count * period, duration]
  weight = easing.keyframes(t, lean_keys, [0, 1, 1, 0])
  root_xz = np.stack([stance_sign * 0.07 * weight, np.zeros(n)], -1)
  swings = []
  kick_amount = np.zeros(n)
  for i in range(count):
    t0 = shift + i * period + 0.1
    t1 = t0 + period - 0.2
    a, b = int(round(t0 * fps)), int(round(t1 * fps))
    u = segment.swing_u(b - a)
    # The foot chambers (knee up), snaps out to full reach, then comes back down.
    out = easing.bump(np.clip((u - 0.15) / 0.7, 0, 1))
    lift = np.zeros((b - a, 3))
    lift[:, 1] = height * easing.bump(u) ** 0.7
    lift[:, 2] = reach * out
    swings.append(segment.Swing(foot=side, start=a, end=b, lift=lift,
                                pitch=0.35 * easing.bump(u), lead=0.0, same_spot=True))
    kick_amount[a:b] = np.maximum(kick_amount[a:b], out)
  tilt = np.zeros((n, 3))
  tilt[:, 0] = -0.12 * kick_amount
  tilt[:, 1] = 0.03 * stance_sign * weight
  wrists = {}
  for s in (0, 1):
    wrists[s] = upper_body.arm_direction(upper_body.REST_FORWARD,
                                         upper_body.REST_OUT + np.deg2rad(30) * weight
                                         ) * upper_body.REST_REACH * rig.body().arm[s]
  wrist_list, pole_list = _arms(n, wrists, {})
  upper = upper_body.upper_pose(n, wrists=wrist_list, poles=pole_list,
                                spine_pitch=-0.05 * kick_amount)
  attrs = {"action": "kick", "side": SIDES[side], "count": count, "direction": None,
           "speed": None}
  return segment.still(n, upper, attrs, tilt=tilt, swings=swings, root_xz=root_xz)


def clap(fps: float, count: int, period: float = 0.4, hand_height: float = -0.22) -> segment.Segment:
  """Bring both hands up in front of the chest and clap `count` times, `period` s each.

  hand_height: hands relative to the shoulders, m.
  """
  t_up = 0.5
  duration = t_up + count * period + t_up + 0.1
  n, t = easing.frames(duration, fps)
  sx = rig.body().shoulder_in_chest[0, 0]
  apart = np.array([-sx + 0.2, hand_height, 0.33])
  together = np.array([-sx + 0.035, hand_height + 0.02, 0.36])
  t_end = t_up + count * period
  on = easing.keyframes(t, [0, t_up, t_end, duration - 0.1, duration], [0, 1, 1, 0, 0])
  closed = np.zeros(n)
  for i in range(count):
    base = t_up + i * period
    closed = np.maximum(closed, easing.bump(np.clip((t - base) / period, 0, 1)))
  wrists, poles = {}, {}
  for s in (0, 1):
    rest_w, rest_p = _rest_wrist(n, s)
    target = apart + (together - apart) * closed[:, None]
    wrists[s] = rest_w + (target - rest_w) * on[:, None]
    poles[s] = rest_p + (np.array([1.0, -0.5, -0.5]) - rest_p) * on[:, None]
  wrist_list, pole_list = _arms(n, wrists, poles)
  upper = upper_body.upper_pose(n, wrists=wrist_list, poles=pole_list, head_pitch=0.1 * on)
  attrs = {"action": "clap", "count": count, "side": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs)


def _sit_profile(t, duration):
  """0 = standing, 1 = seated, with the trunk leaning forward in between."""
  s = easing.min_jerk((t - 0.1) / (duration - 0.25))
  lean = easing.bump(np.clip((t - 0.1) / (duration - 0.25), 0, 1))
  return s, lean


def sit_down(fps: float, duration: float) -> segment.Segment:
  """Sit down on an (invisible) chair behind; ends seated."""
  n, t = easing.frames(duration, fps)
  s, lean = _sit_profile(t, duration)
  return _sit_segment(n, s, lean, "sit_down", "seated")


def stand_up(fps: float, duration: float) -> segment.Segment:
  """Stand up from sitting; starts seated."""
  n, t = easing.frames(duration, fps)
  s, lean = _sit_profile(t, duration)
  return _sit_segment(n, 1.0 - s, lean, "stand_up", "standing")


def _sit_segment(n, s, lean, action, end_state):
  drop = rig.body().standing_height - SEAT_HEIGHT
  height = -drop * s
  root_xz = np.stack([np.zeros(n), -0.28 * s], -1)
  tilt = np.zeros((n, 3))
  tilt[:, 0] = 0.45 * lean + 0.1 * s
  wrists = {}
  for side in (0, 1):
    wrists[side] = upper_body.arm_direction(upper_body.REST_FORWARD + 0.5 * lean + 0.35 * s,
                                            upper_body.REST_OUT) * 0.93 * rig.body().arm[side]
  wrist_list, pole_list = _arms(n, wrists, {})
  upper = upper_body.upper_pose(n, wrists=wrist_list, poles=pole_list, spine_pitch=0.35 * lean,
                                head_pitch=-0.2 * lean)
  attrs = {"action": action, "side": None, "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, height=height, tilt=tilt, root_xz=root_xz,
                       end_state=end_state)


def idle(fps: float, duration: float, rng: np.random.Generator) -> segment.Segment:
  """Stand still: a little sway, breathing, glancing around."""
  n, t = easing.frames(duration, fps)
  env = easing.window(t, 0.0, t[-1], 0.5)
  f1, f2, ph = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.4), rng.uniform(0, 2 * np.pi, size=3)
  root_xz = np.stack([0.012 * np.sin(2 * np.pi * f1 * t + ph[0]) * env,
                      0.006 * np.sin(2 * np.pi * f2 * t + ph[1]) * env], -1)
  root_xz -= root_xz[0]
  look = rng.uniform(-0.5, 0.5)
  head_yaw = look * easing.window(t, 0.2 * t[-1], 0.9 * t[-1], 0.5)
  breath = 0.015 * np.sin(2 * np.pi * 0.25 * t + ph[2]) * env
  upper = upper_body.upper_pose(n, spine_pitch=breath, head_yaw=head_yaw)
  attrs = {"action": "idle", "side": None, "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, root_xz=root_xz)
