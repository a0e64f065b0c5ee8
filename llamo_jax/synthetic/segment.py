"""What one action contributes to a clip: its control channels, in its own frame.

A segment starts at the origin facing +Z (yaw 0); compose.py places it after
the previous one. Channels with zero velocity at both ends (every action uses
min-jerk ramps) concatenate smoothly; compose.py still blends the pose
channels over ~0.3 s at each boundary.
"""
import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class Swing:
  """One foot in the air from frame `start` to `end` (exclusive; it lands at `end`).

  The toes move from the previous footprint to the next; `lift` [end-start, 3]
  is added in the body's heading frame (x left, y up, z forward) and `pitch`
  [end-start] >= 0 tips the toes down (radians, added to the planted pitch: the
  heel rises, the toes never go below the floor). The
  next footprint is the foot's neutral spot under the hip `lead` seconds after
  landing (half the nominal stance), so the stance is centred under the hip.
  """
  foot: int
  start: int
  end: int
  lift: np.ndarray
  pitch: np.ndarray
  lead: float
  progress: np.ndarray | None = None  # [end-start] 0->1 along the footprints; None = lift, move, set down.
  same_spot: bool = False  # lands where it took off (kicks), whatever the pelvis did meanwhile.
  # Where it lands, body-frame (x, z) m from the neutral spot (a lunge or a step back to kneel).
  land: tuple[float, float] | None = None
  # Extra toe-down pitch (rad) the landed foot keeps until its next swing: the toes stay planted
  # and the heel is up (toes tucked under a kneeling leg). The swing's `pitch` should end there.
  hold_pitch: float = 0.0


def swing_u(m: int) -> np.ndarray:
  """Normalised time (0, 1) of the m in-air frames of a swing (0 = last planted frame, 1 = landing)."""
  return np.arange(1, m + 1, dtype=np.float64) / (m + 1)


@dataclasses.dataclass
class Segment:
  """Control channels of one action over its `n` frames.

  root_xz: [n, 2] pelvis (x, z) in the segment's start frame.
  heading: [n] body yaw relative to the start (radians, + = left).
  height: [n] pelvis height relative to standing (m).
  tilt: [n, 3] pelvis pitch (+ forward), roll, yaw wobble (radians).
  upper: [n, 13, 4] upper-body local rotations (see upper_body.py).
  swings: foot swings, frames relative to the segment.
  attrs: the machine-readable description (action, side, count, speed, ...).
  end_state: "standing" or "seated"; the next segment must start there.
  """
  root_xz: np.ndarray
  heading: np.ndarray
  height: np.ndarray
  tilt: np.ndarray
  upper: np.ndarray
  swings: list[Swing]
  attrs: dict[str, Any]
  end_state: str = "standing"

  @property
  def n(self) -> int:
    return int(self.heading.shape[0])

  def __post_init__(self):
    n = self.heading.shape[0]
    shapes = {"root_xz": (n, 2), "heading": (n,), "height": (n,), "tilt": (n, 3),
              "upper": (n, 13, 4)}
    for name, shape in shapes.items():
      if getattr(self, name).shape != shape:
        raise ValueError(f"segment {self.attrs.get('action')}: {name} has shape "
                         f"{getattr(self, name).shape}, expected {shape}")
    for s in self.swings:
      if not 0 <= s.start < s.end <= n or s.lift.shape != (s.end - s.start, 3):
        raise ValueError(f"segment {self.attrs.get('action')}: bad swing {s.start}..{s.end} in {n} frames")


def still(n: int, upper: np.ndarray, attrs: dict[str, Any], height: np.ndarray | None = None,
          tilt: np.ndarray | None = None, swings: list[Swing] | None = None,
          root_xz: np.ndarray | None = None, end_state: str = "standing") -> Segment:
  """A segment whose pelvis stays put unless told otherwise."""
  return Segment(
      root_xz=np.zeros((n, 2)) if root_xz is None else root_xz,
      heading=np.zeros(n),
      height=np.zeros(n) if height is None else height,
      tilt=np.zeros((n, 3)) if tilt is None else tilt,
      upper=upper, swings=swings or [], attrs=attrs, end_state=end_state)
