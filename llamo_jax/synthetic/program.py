"""Random programs: which actions a clip strings together, with which parameters.

`sample_segments(rng, fps, min_frames, max_frames)` draws 1-3 actions (sitting
down is followed by standing up, or ends the clip), builds their segments and
returns them; the total length lies in [min_frames, max_frames] (an idle
segment pads short programs, long ones are redrawn).
"""
import math

import numpy as np

from llamo_jax.synthetic import actions
from llamo_jax.synthetic import locomotion
from llamo_jax.synthetic import segment

ACTION_WEIGHTS = {
    "walk": 0.16, "jog": 0.05, "run": 0.05, "turn": 0.08, "spin": 0.04, "jump": 0.08,
    "squat": 0.06, "wave": 0.08, "raise": 0.07, "punch": 0.07, "kick": 0.07, "clap": 0.06,
    "sit_down": 0.05, "idle": 0.03, "stand_up": 0.02,
}
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
  raise ValueError(f"unknown action {action!r}; expected one of {sorted(ACTION_WEIGHTS)}")


def _draw_actions(rng: np.random.Generator) -> list[str]:
  names = list(ACTION_WEIGHTS)
  p = np.array([ACTION_WEIGHTS[a] for a in names])
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
                    max_frames: int) -> list[segment.Segment]:
  """A random program of segments totalling min_frames..max_frames frames."""
  for _ in range(100):
    plan = _draw_actions(rng)
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
