"""Random programs: which actions a clip strings together, with which parameters.

`sample_segments(rng, fps, min_frames, max_frames, action_set)` draws 1-3 actions
(sitting down is followed by standing up, or ends the clip), builds their segments
and returns them; the total length lies in [min_frames, max_frames] (an idle
segment pads short programs, long ones are redrawn).

Action sets (ACTION_SETS): "core", the 15 actions the corpus has always drawn (the
default; its clips are byte for byte those of generator version 1), and "wide", which
adds actions that reach poses and motions the core never does (low_poses.py: crouch,
kneel, bend over / pick up; gestures.py: stretch, free arm gestures). "wide" gives
the new actions 40% of the draws and the core ones the rest, in their core ratios.
"""
import math

import numpy as np

from llamo_jax.synthetic import actions
from llamo_jax.synthetic import gestures
from llamo_jax.synthetic import locomotion
from llamo_jax.synthetic import low_poses
from llamo_jax.synthetic import segment

ACTION_WEIGHTS = {
    "walk": 0.16, "jog": 0.05, "run": 0.05, "turn": 0.08, "spin": 0.04, "jump": 0.08,
    "squat": 0.06, "wave": 0.08, "raise": 0.07, "punch": 0.07, "kick": 0.07, "clap": 0.06,
    "sit_down": 0.05, "idle": 0.03, "stand_up": 0.02,
}
WIDE_SHARE = 0.4
_NEW_WEIGHTS = {"crouch": 0.2, "kneel": 0.2, "bend": 0.25, "stretch": 0.15, "gesture": 0.2}
ACTION_SETS = {
    "core": ACTION_WEIGHTS,
    "wide": {**{a: w * (1.0 - WIDE_SHARE) for a, w in ACTION_WEIGHTS.items()},
             **{a: w * WIDE_SHARE for a, w in _NEW_WEIGHTS.items()}},
}
ALL_ACTIONS = tuple(dict.fromkeys(a for weights in ACTION_SETS.values() for a in weights))
TURN_ANGLES = (45.0, 90.0, 90.0, 90.0, 135.0, 180.0, 180.0)


def _locomotion(rng, fps, gait):
  if gait == "walk":
    direction = rng.choice(["forward", "forward", "forward", "forward", "backward", "left", "right"])
    lo, hi = {"forward": (0.8, 1.6), "backward": (0.5, 1.0)}.get(direction, (0.4, 0.8))
    duration = rng.uniform(2.5, 6.0)
  else:
    direction = "forward"
    lo, hi = (1.8, 2.6) if gait == "jog" else (2.8, 3.8)
    duration = rng.uniform(2.5, 4.5)
  speed = rng.uniform(lo, hi)
  turn = 0.0
  if direction == "forward" and rng.random() < 0.3:
    turn = math.radians(rng.uniform(45.0, 180.0)) * rng.choice([-1.0, 1.0])
  return locomotion.locomotion(fps, gait, str(direction), speed, duration, turn=turn,
                               first_foot=int(rng.integers(2)),
                               style=locomotion.GAITS[gait].varied(rng))


def build(rng: np.random.Generator, fps: float, action: str) -> segment.Segment:
  """One segment of `action` with sampled parameters."""
  side = int(rng.integers(2))
  if action in ("walk", "jog", "run"):
    return _locomotion(rng, fps, action)
  if action == "turn":
    return locomotion.turn_in_place(fps, math.radians(rng.choice(TURN_ANGLES)) * rng.choice([-1, 1]))
  if action == "spin":
    turns = 1 if rng.random() < 0.75 else 2
    return locomotion.turn_in_place(fps, 2 * math.pi * turns * rng.choice([-1, 1]), spin=True)
  if action == "jump":
    count = int(rng.integers(1, 5))
    distance = rng.uniform(0.4, 0.9) * count if rng.random() < 0.4 else 0.0
    return actions.jump(fps, count, distance, rng.uniform(0.15, 0.35))
  if action == "squat":
    return actions.squat(fps, int(rng.integers(1, 4)), rng.uniform(0.3, 0.45), rng.uniform(1.6, 2.4))
  if action == "wave":
    return actions.wave(fps, side, int(rng.integers(2, 6)), period=rng.uniform(0.4, 0.65),
                        hand_height=rng.uniform(0.25, 0.4))
  if action == "raise":
    return actions.raise_arms(fps, str(rng.choice(["left", "right", "both"])), rng.uniform(0.5, 2.0))
  if action == "punch":
    return actions.punch(fps, side, int(rng.integers(1, 5)), period=rng.uniform(0.42, 0.65))
  if action == "kick":
    return actions.kick(fps, side, int(rng.integers(1, 4)), rng.uniform(0.4, 0.7),
                        rng.uniform(0.35, 0.6))
  if action == "clap":
    return actions.clap(fps, int(rng.integers(2, 7)), period=rng.uniform(0.32, 0.5),
                        hand_height=rng.uniform(-0.3, -0.05))
  if action == "sit_down":
    return actions.sit_down(fps, rng.uniform(1.6, 2.4))
  if action == "stand_up":
    return actions.stand_up(fps, rng.uniform(1.6, 2.4))
  if action == "idle":
    return actions.idle(fps, rng.uniform(1.0, 3.0), rng)
  if action == "crouch":
    return low_poses.crouch(fps, rng.uniform(0.5, 0.62), rng.uniform(0.5, 2.5), rng.uniform(0.3, 0.7),
                            rng.uniform(-0.6, 0.6))
  if action == "kneel":
    return low_poses.kneel(fps, str(rng.choice(["left", "right", "both"])), rng.uniform(0.5, 2.5),
                           rng.uniform(0.35, 0.5))
  if action == "bend":
    if rng.random() < 0.4:
      return low_poses.bend(fps, "over", None, rng.uniform(1.5, 1.9), rng.uniform(0.3, 1.5),
                            rng.uniform(-0.3, 0.3))
    hand = str(rng.choice(["left", "right", "both"]))
    twist = {"left": 0.3, "right": -0.3, "both": 0.0}[hand] * rng.uniform(0.0, 1.0)
    return low_poses.bend(fps, "pick", hand, rng.uniform(1.2, 1.6), rng.uniform(0.3, 1.0), twist)
  if action == "stretch":
    return gestures.stretch(fps, str(rng.choice(gestures.STRETCHES)), side, rng.uniform(0.8, 2.5))
  if action == "gesture":
    return gestures.gesture(fps, str(rng.choice(gestures.GESTURES)), side, int(rng.integers(2, 6)), rng)
  raise ValueError(f"unknown action {action!r}; expected one of {sorted(ALL_ACTIONS)}")


def _draw_actions(rng: np.random.Generator, weights: dict[str, float]) -> list[str]:
  names = list(weights)
  p = np.array([weights[a] for a in names])
  count = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
  plan = []
  while len(plan) < count:
    a = str(rng.choice(names, p=p / p.sum()))
    if plan and plan[-1] == "sit_down":
      a = "stand_up"
    elif a == "stand_up":
      if plan:
        continue  # standing up needs a seat; only sit_down or the clip start give one
    plan.append(a)
  return plan


def sample_segments(rng: np.random.Generator, fps: float, min_frames: int,
                    max_frames: int, action_set: str = "core") -> list[segment.Segment]:
  """A random program of segments totalling min_frames..max_frames frames, drawn from `action_set`."""
  if action_set not in ACTION_SETS:
    raise ValueError(f"unknown action set {action_set!r}; choose one of {sorted(ACTION_SETS)}")
  for _ in range(100):
    plan = _draw_actions(rng, ACTION_SETS[action_set])
    segs = [build(rng, fps, a) for a in plan]
    total = sum(s.n for s in segs)
    while total > max_frames and len(segs) > 1:
      total -= segs.pop().n
    if total > max_frames:
      continue
    if total < min_frames:
      if segs[-1].end_state == "seated":
        continue
      pad = (min_frames - total) / fps + rng.uniform(0.3, 1.0)
      segs.append(actions.idle(fps, pad, rng))
      if sum(s.n for s in segs) > max_frames:
        continue
    return segs
  raise RuntimeError("could not draw a program within the frame limits; "
                     f"min_frames={min_frames} max_frames={max_frames} are too tight")
