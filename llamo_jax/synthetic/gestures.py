"""Free upper-body actions of the "wide" action set: stretches and arm gestures.

stretch: both arms overhead, a side bend or a trunk twist. gesture: one arm reaches out or
points in a sampled direction, both arms swing, or the hands shake. The trunk follows the
arms (lean, twist), so the facing of the shoulders moves against the hips, as it does in
real motion. Feet stay planted; sides are 0 = left, 1 = right.
"""
import numpy as np

from llamo_jax.synthetic import actions
from llamo_jax.synthetic import easing
from llamo_jax.synthetic import rig
from llamo_jax.synthetic import segment
from llamo_jax.synthetic import upper_body

STRETCHES = ("overhead", "side", "twist")
GESTURES = ("reach", "point", "swing", "shake")


def _arms(n: int, targets: dict[int, np.ndarray], on: np.ndarray, poles=None) -> tuple[list, list]:
  """Wrists blended from rest to `targets` [n, 3] (canonical) by `on` [n]; poles likewise."""
  wrists, out_poles = [], []
  for s in (0, 1):
    rest_w, rest_p = upper_body.rest_arm(n, s)
    w = on[:, None]
    wrists.append(rest_w + (targets[s] - rest_w) * w if s in targets else rest_w)
    p = (poles or {}).get(s)
    out_poles.append(rest_p + (p - rest_p) * w if p is not None else rest_p)
  return wrists, out_poles


def stretch(fps: float, variant: str, side: int, hold: float) -> segment.Segment:
  """Stretch: "overhead" (both arms up, on the toes of the spine), "side" (arms up, the trunk
  bends to `side`) or "twist" (arms out at shoulder height, the trunk twists to `side`)."""
  if variant not in STRETCHES:
    raise ValueError(f"stretch variant {variant!r}: choose one of {STRETCHES}")
  up, down = 0.9, 0.8
  duration = 0.15 + up + hold + down + 0.2
  n, t = easing.frames(duration, fps)
  on = easing.rise_hold_fall(t, 0.15, up, hold, down)
  sign = 1.0 if side == 0 else -1.0  # + = to the body's left
  spine_roll = spine_yaw = spine_pitch = 0.0
  tilt = np.zeros((n, 3))
  if variant == "twist":
    ang, out, reach = np.deg2rad(85), np.deg2rad(70), 0.98
    spine_yaw = sign * 0.75 * on
    tilt[:, 2] = sign * 0.2 * on
  else:
    ang, out, reach = np.deg2rad(172), np.deg2rad(6), 1.0
    spine_pitch = -0.12 * on  # leans back a little with the arms up
    if variant == "side":
      spine_roll = -sign * 0.45 * on  # roll + bends right
      tilt[:, 1] = -sign * 0.1 * on
  targets = {s: np.broadcast_to(upper_body.arm_direction(ang, out) * reach * rig.body().arm[s], (n, 3))
             for s in (0, 1)}
  wrists, poles = _arms(n, targets, on, {s: np.broadcast_to(np.array([1.0, 0.0, -0.3]), (n, 3))
                                         for s in (0, 1)})
  upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, spine_pitch=spine_pitch,
                                spine_yaw=spine_yaw, spine_roll=spine_roll,
                                head_pitch=-0.2 * on if variant != "twist" else 0.0,
                                head_yaw=0.5 * spine_yaw)
  attrs = {"action": "stretch", "variant": variant, "side": None if variant == "overhead" else actions.SIDES[side],
           "count": None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, tilt=tilt)


def gesture(fps: float, variant: str, side: int, count: int, rng: np.random.Generator) -> segment.Segment:
  """An arm gesture: "reach" (one arm out to a sampled spot, the trunk leaning after it), "point"
  (one arm straight at a sampled direction, the head turning to it), "swing" (both arms swing
  back and forth `count` times) or "shake" (both forearms shake loosely `count` times)."""
  if variant not in GESTURES:
    raise ValueError(f"gesture variant {variant!r}: choose one of {GESTURES}")
  b = rig.body()
  sign = 1.0 if side == 0 else -1.0
  if variant in ("reach", "point"):
    up, hold, down = rng.uniform(0.5, 0.9), rng.uniform(0.4, 1.5), rng.uniform(0.5, 0.9)
    n, t = easing.frames(0.15 + up + hold + down + 0.2, fps)
    on = easing.rise_hold_fall(t, 0.15, up, hold, down)
    fwd = rng.uniform(np.deg2rad(55), np.deg2rad(130)) if variant == "reach" else rng.uniform(
        np.deg2rad(75), np.deg2rad(100))
    out = rng.uniform(np.deg2rad(0), np.deg2rad(80))
    reach = 1.0 if variant == "point" else rng.uniform(0.9, 1.0)
    target = np.broadcast_to(upper_body.arm_direction(fwd, out) * reach * b.arm[side], (n, 3))
    wrists, poles = _arms(n, {side: target}, on, {side: np.broadcast_to(np.array([1.0, -0.3, -0.5]), (n, 3))})
    lean = (0.25 * np.sin(fwd) if variant == "reach" else 0.0) * on
    twist = sign * out * (0.4 if variant == "reach" else 0.25) * on
    tilt = np.zeros((n, 3))
    tilt[:, 0] = 0.5 * lean
    upper = upper_body.upper_pose(n, wrists=wrists, poles=poles, spine_pitch=0.5 * lean, spine_yaw=twist,
                                  head_yaw=sign * out * 0.6 * on, head_pitch=-0.1 * on)
    used = actions.SIDES[side]
  else:
    period = rng.uniform(0.8, 1.2) if variant == "swing" else rng.uniform(0.25, 0.4)
    n, t = easing.frames(0.4 + count * period + 0.5, fps)
    on = easing.window(t, 0.1, t[-1] - 0.1, 0.35)
    osc = np.sin(2 * np.pi * (t - 0.3) / period) * on
    targets = {}
    for s in (0, 1):
      if variant == "swing":
        amp = rng.uniform(np.deg2rad(35), np.deg2rad(60))
        ang = upper_body.REST_FORWARD + amp * osc * (1.0 if s == 0 else -1.0) + 0.2 * on
        targets[s] = upper_body.arm_direction(ang, upper_body.REST_OUT) * 0.97 * b.arm[s]
      else:
        bent = upper_body.arm_direction(np.deg2rad(40) + 0.12 * osc * (1.0 if s == 0 else -1.0),
                                        np.deg2rad(20) + 0.1 * osc)
        targets[s] = bent * 0.75 * b.arm[s]
    # The oscillation fades in with `on`; the arms leave rest faster than that.
    wrists, poles_l = _arms(n, targets, np.minimum(1.0, 3.0 * on))
    upper = upper_body.upper_pose(n, wrists=wrists, poles=poles_l,
                                  spine_yaw=0.08 * osc if variant == "swing" else 0.0)
    used = None
    tilt = np.zeros((n, 3))
  attrs = {"action": "gesture", "variant": variant, "side": used,
           "count": count if variant in ("swing", "shake") else None, "direction": None, "speed": None}
  return segment.still(n, upper, attrs, tilt=tilt)
