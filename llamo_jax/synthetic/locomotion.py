"""Locomotion: walking, jogging and running in any direction or along a curve, and turning in place.

The pelvis follows a smooth path (speed ramps up and down with min-jerk, so a
segment starts and ends at rest); a gait clock schedules the foot swings, and
footplan.py plants each landing foot under its hip, so feet never skate.
"""
import dataclasses
import math

import numpy as np

from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic import upper_body


@dataclasses.dataclass(frozen=True)
class Gait:
  duty: float  # stance fraction of a stride
  lift: float  # swing foot clearance, m
  swing_reach: float  # extra forward reach of the swinging foot (m), running
  bob: float  # pelvis bob amplitude, m (+: highest at mid-stance, inverted pendulum)
  crouch: float  # pelvis lowered while moving, m
  lean: float  # trunk lean forward, rad
  arm_swing: float  # rad
  arm_reach: float  # wrist-shoulder distance / arm length while moving (bent elbows)
  ramp: float  # s to reach speed from rest
  cadence: float = 1.0  # personal scale of the stride frequency

  def stride_frequency(self, speed: float) -> float:
    """Strides per second (one stride = both feet step) at `speed` m/s."""
    if self.duty > 0.5:
      return self.cadence * (0.6 + 0.3 * speed)
    return self.cadence * (1.2 + 0.06 * speed)

  def varied(self, rng: np.random.Generator) -> "Gait":
    """The same gait with a personal style: arm swing, clearance, lean, bob, cadence."""
    return dataclasses.replace(
        self, arm_swing=self.arm_swing * rng.uniform(0.6, 1.4), lift=self.lift * rng.uniform(0.8, 1.3),
        lean=self.lean * rng.uniform(0.5, 1.5), bob=self.bob * rng.uniform(0.6, 1.4),
        cadence=rng.uniform(0.92, 1.08))


GAITS = {
    "walk": Gait(duty=0.62, lift=0.09, swing_reach=0.0, bob=0.012, crouch=0.01, lean=0.03,
                 arm_swing=np.deg2rad(18), arm_reach=0.95, ramp=0.7),
    "jog": Gait(duty=0.42, lift=0.15, swing_reach=0.12, bob=-0.025, crouch=0.04, lean=0.08,
                arm_swing=np.deg2rad(28), arm_reach=0.72, ramp=0.8),
    "run": Gait(duty=0.35, lift=0.22, swing_reach=0.22, bob=-0.035, crouch=0.06, lean=0.14,
                arm_swing=np.deg2rad(38), arm_reach=0.62, ramp=0.9),
}
# Body-frame (x, z) unit vectors of the travel directions.
DIRECTIONS = {"forward": (0.0, 1.0), "backward": (0.0, -1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0)}


def rotate_xz(xz: np.ndarray, yaw: np.ndarray) -> np.ndarray:
  """Rotate body-frame (x, z) vectors [..., 2] by yaw [...] about +Y."""
  c, s = np.cos(yaw), np.sin(yaw)
  x, z = xz[..., 0], xz[..., 1]
  return np.stack([c * x + s * z, -s * x + c * z], axis=-1)


def _integrate(v: np.ndarray, fps: float) -> np.ndarray:
  """Trapezoidal running integral along axis 0, starting at 0."""
  out = np.zeros_like(v)
  out[1:] = np.cumsum(0.5 * (v[1:] + v[:-1]), axis=0) / fps
  return out


def _step_schedule(n: int, fps: float, first_foot: int, step_interval: float,
                   swing_fraction: float) -> list[tuple[int, int, int]]:
  """(foot, start, end) of alternating steps filling n frames.

  The nominal interval between steps is stretched so the last foot lands just
  before the segment ends (the pelvis has stopped by then).
  """
  span = (n - 1) / fps - 0.1
  swing_steps = 2.0 * swing_fraction  # swing duration in step intervals
  k = max(2, int(round((span / step_interval) - swing_steps + 1)))
  h = span / (k - 1 + swing_steps)
  steps = []
  for i in range(k):
    start = 0.05 + i * h
    a, b = int(round(start * fps)), int(round((start + swing_steps * h) * fps))
    b = min(b, n - 1)
    if b - a >= 2:
      steps.append(((first_foot + i) % 2, a, b))
  return steps


def locomotion(fps: float, gait: str, direction: str, speed: float, duration: float,
               turn: float = 0.0, first_foot: int = 0, style: Gait | None = None) -> segment.Segment:
  """Walk / jog / run in `direction` at `speed` m/s for `duration` s.

  Args:
    turn: heading change over the segment (radians, + = left), spread evenly
      over the distance travelled: a curved path. Only with direction forward.
    first_foot: 0 = left foot steps first.
    style: gait parameters to use instead of GAITS[gait] (e.g. GAITS[gait].varied(rng)).
  """
  if gait not in GAITS:
    raise ValueError(f"unknown gait {gait!r}; expected one of {sorted(GAITS)}")
  if direction not in DIRECTIONS:
    raise ValueError(f"unknown direction {direction!r}; expected one of {sorted(DIRECTIONS)}")
  g = style or GAITS[gait]
  n = int(round(duration * fps))
  t = easing.phase_time(n, fps)
  t_end = t[-1]
  env = easing.window(t, 0.0, t_end, min(g.ramp, t_end / 3))
  v = speed * env
  dist = _integrate(v, fps)
  heading = turn * dist / max(dist[-1], 1e-9)
  vel = rotate_xz(np.asarray(DIRECTIONS[direction]) * v[:, None], heading)
  root_xz = _integrate(vel, fps)

  stride = 1.0 / g.stride_frequency(speed)
  steps = _step_schedule(n, fps, first_foot, 0.5 * stride, 1.0 - g.duty)
  swings = []
  for foot, a, b in steps:
    u = segment.swing_u(b - a)
    lift = np.zeros((b - a, 3))
    # Toes clear the floor before they travel (plateau profile), so they never scuff;
    # running feet also reach forward mid-swing.
    peak = easing.min_jerk(u / 0.3) * easing.min_jerk((1.0 - u) / 0.3)
    lift[:, 1] = g.lift * peak * (0.4 + 0.6 * env[a:b])
    lift[:, 2] = g.swing_reach * easing.bump(u) * env[a:b]
    pitch = 0.35 * easing.bump(np.clip(1.6 * u, 0, 1))
    swings.append(segment.Swing(foot=foot, start=a, end=b, lift=lift, pitch=pitch,
                                lead=g.duty * stride))

  # Gait phase in steps (0 at the first lift-off): drives bob, wobble and arm swing.
  phase = (t - 0.05) / (0.5 * stride) if not steps else np.interp(
      t, [steps[0][1] / fps, steps[-1][1] / fps], [0.0, len(steps) - 1.0])
  mid = 1.0 - g.duty  # phase offset of mid-stance
  height = -g.crouch * env + g.bob * env * np.cos(2 * np.pi * (phase - mid))
  sideways = direction in ("left", "right")
  lean = g.lean * env * (-0.5 if direction == "backward" else 1.0)
  wobble = 0.06 * env * np.sin(np.pi * (phase - mid)) * (0.3 if sideways else 1.0)
  tilt = np.stack([lean * 0.5, 0.02 * env * np.cos(np.pi * (phase - mid)), wobble], axis=-1)

  # Each arm swings against the opposite leg: forward-most when that leg lands.
  first_left = first_foot == 0
  swing_angle = g.arm_swing * env * (0.3 if sideways else 1.0)
  left_fwd = -np.cos(np.pi * (phase - 2 * mid + (0.0 if first_left else 1.0)))
  wrists, poles = [], []
  for side, sign in ((0, 1.0), (1, -1.0)):
    reach = (upper_body.REST_REACH + (g.arm_reach - upper_body.REST_REACH) * env) * rig.body().arm[side]
    ang = upper_body.REST_FORWARD + sign * swing_angle * left_fwd
    wrists.append(upper_body.arm_direction(ang, upper_body.REST_OUT) * reach[:, None])
    poles.append(np.broadcast_to(np.array([0.15, 0.0, -1.0]), (n, 3)))
  upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, spine_pitch=lean * 0.5,
                                spine_yaw=-wobble, head_pitch=0.05 * env)
  attrs = {"action": gait, "direction": direction, "speed": round(float(speed), 2),
           "count": len(steps), "side": None}
  if turn:
    attrs["side"] = "left" if turn > 0 else "right"
  return segment.Segment(root_xz=root_xz, heading=heading, height=height, tilt=tilt,
                         upper=upper, swings=swings, attrs=attrs)


def turn_in_place(fps: float, angle: float, spin: bool = False) -> segment.Segment:
  """Turn on the spot by `angle` radians (+ = left) with small stepping feet."""
  deg = abs(math.degrees(angle))
  duration = (0.5 + deg / 360.0 * 1.1) if spin else (0.9 + deg / 150.0)
  n = int(round(duration * fps))
  t = easing.phase_time(n, fps)
  t_end = t[-1]
  heading = angle * easing.min_jerk((t - 0.1) / (t_end - 0.2))
  steps_wanted = max(2, int(math.ceil(deg / (70.0 if spin else 50.0))))
  first = 0 if angle > 0 else 1
  interval = (t_end - 0.1) / (steps_wanted - 0.25)
  steps = _step_schedule(n, fps, first, interval, 0.375)
  swings = []
  for foot, a, b in steps:
    u = segment.swing_u(b - a)
    lift = np.zeros((b - a, 3))
    lift[:, 1] = 0.05 * easing.bump(u)
    swings.append(segment.Swing(foot=foot, start=a, end=b, lift=lift,
                                pitch=0.15 * easing.bump(u), lead=0.3 * interval))
  env = easing.window(t, 0.0, t_end, 0.3)
  turn_sign = 1.0 if angle > 0 else -1.0
  out = np.deg2rad(25.0) * env if spin else 0.0
  wrists = [np.broadcast_to(upper_body.arm_direction(upper_body.REST_FORWARD, upper_body.REST_OUT + out),
                            (n, 3)) * upper_body.REST_REACH * rig.body().arm[s] for s in (0, 1)]
  upper = upper_body.upper_pose(n, wrists=wrists, head_yaw=0.25 * turn_sign * env,
                                spine_yaw=0.1 * turn_sign * env)
  attrs = {"action": "spin" if spin else "turn", "side": "left" if angle > 0 else "right",
           "count": int(round(deg / 360.0)) if spin else None, "direction": None,
           "speed": None}
  return segment.Segment(root_xz=np.zeros((n, 2)), heading=heading, height=np.zeros(n),
                         tilt=np.zeros((n, 3)), upper=upper, swings=swings, attrs=attrs)
