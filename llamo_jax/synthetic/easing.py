"""Smooth 1-D profiles that every synthetic action is built from.

All functions take and return numpy arrays and are vectorised over frames.
Smoothness matters: the corpus is checked for jerk against real capture, so
every profile used for positions is at least C2 (minimum-jerk) at its ends.
"""
import numpy as np


def min_jerk(u: np.ndarray) -> np.ndarray:
  """Minimum-jerk ramp 0 -> 1 for u in [0, 1] (clipped); zero vel/acc at ends."""
  u = np.clip(u, 0.0, 1.0)
  return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def bump(u: np.ndarray) -> np.ndarray:
  """Smooth bump 0 -> 1 -> 0 on u in [0, 1] (0 outside), C2 at both ends."""
  u = np.clip(u, 0.0, 1.0)
  return (np.sin(np.pi * u) ** 2) ** 1.5


def window(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
  """0 before `start`, min-jerk up over `ramp`, 1 until `end - ramp`, down to 0 at `end`."""
  ramp = max(min(ramp, 0.5 * (end - start)), 1e-6)
  up = min_jerk((t - start) / ramp)
  down = min_jerk((end - t) / ramp)
  return up * down


def phase_time(num_frames: int, fps: float) -> np.ndarray:
  """Frame times in seconds, [num_frames]."""
  return np.arange(num_frames, dtype=np.float64) / fps


def frames(duration: float, fps: float) -> tuple[int, np.ndarray]:
  """(number of frames of `duration` seconds, their times [n])."""
  n = int(round(duration * fps))
  return n, phase_time(n, fps)


def rise_hold_fall(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
  """0 until `start`, min-jerk up to 1 over `rise` s, held `hold` s, back to 0 over `fall` s."""
  return keyframes(t, [0.0, start, start + rise, start + rise + hold, start + rise + hold + fall,
                       t[-1] + 1.0], [0, 0, 1, 1, 0, 0])


def blend_weights(num_frames: int, boundary: int, width: int) -> np.ndarray:
  """Weights of the NEXT segment around a boundary frame: 0 -> 1 over `width` frames centred there."""
  t = np.arange(num_frames, dtype=np.float64)
  return min_jerk((t - (boundary - 0.5 * width)) / max(width, 1))


def wrap_angle(a: np.ndarray) -> np.ndarray:
  """Angles wrapped to (-pi, pi]."""
  return np.pi - np.mod(np.pi - a, 2.0 * np.pi)


def keyframes(t: np.ndarray, times, values) -> np.ndarray:
  """Min-jerk interpolation through keys: [len(t), ...] from times [K] and values [K, ...].

  Every key is reached with zero velocity, so poses stop at keys; values are
  held before the first and after the last key.
  """
  times = np.asarray(times, np.float64)
  values = np.asarray(values, np.float64)
  if times.ndim != 1 or len(times) != len(values) or np.any(np.diff(times) <= 0):
    raise ValueError(f"keyframes need increasing times matching values, got {times}")
  k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
  u = min_jerk((t - times[k]) / (times[k + 1] - times[k]))
  u = u.reshape(u.shape + (1,) * (values.ndim - 1))
  return values[k] + (values[k + 1] - values[k]) * u
