"""Motion metrics on joint positions [T,22,3] (metres, Y up, floor at y=0).

  mpjpe_mm       mean per-joint position error, global positions.
  pa_mpjpe_mm    the same after a per-frame Procrustes (similarity) alignment.
  root_error_mm  mean distance of the pelvis trajectory on the floor plane (xz).
  jerk           per-frame jerk magnitude j_t = mean over joints of |third difference| * fps^3
                 (m/s^3); peak_jerk = max_t j_t, auj (area under jerk) = sum_t j_t / fps.
  foot_skating   fraction of frames where a toe joint (10 or 11) is below 5 cm in this
                 frame and the next and moves horizontally faster than 0.5 m/s.
  penetration_mm mean over frames of how far the lowest foot joint (ankles 7/8, toes 10/11)
                 is below the floor (0 for a frame on or above it).
  floating_mm    mean over frames of how far the lowest foot joint is above floor + 5 cm
                 (0 within the tolerance); a jump counts too, so compare with the real-motion
                 value of the same clips.
  mpjpe by frame window (over a set of clips): MPJPE of all frames whose index lies in
                 [a, a + window), the drift curve of a model whose root is integrated
                 from velocities.
"""
from __future__ import annotations

import numpy as np

from llamo_jax.motion import skeleton

TOES = (skeleton.L_FOOT, skeleton.R_FOOT)
FEET = (skeleton.L_ANKLE, skeleton.R_ANKLE, skeleton.L_FOOT, skeleton.R_FOOT)
FLOAT_TOLERANCE = 0.05  # metres above the floor that still count as contact


def frame_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """[T,J,3] x2 -> [T] mean joint position error per frame, metres."""
  return np.linalg.norm(pred - target, axis=-1).mean(-1)


def mpjpe_mm(pred: np.ndarray, target: np.ndarray) -> float:
  return float(1000.0 * frame_errors(pred, target).mean())


def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Per frame, the similarity transform (scale, rotation, translation) of pred closest to target.

  pred, target: [T,J,3] -> aligned pred [T,J,3].
  """
  mu_p, mu_t = pred.mean(1, keepdims=True), target.mean(1, keepdims=True)
  p, t = pred - mu_p, target - mu_t
  cov = np.einsum("tji,tjk->tik", p, t)
  u, s, vt = np.linalg.svd(cov)
  d = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt)))
  s[:, -1] *= d
  u[:, :, -1] *= d[:, None]
  rot = np.einsum("tij,tjk->tik", u, vt)               # p @ rot ~ t
  scale = s.sum(-1) / np.maximum((p ** 2).sum((1, 2)), 1e-12)
  return scale[:, None, None] * np.einsum("tji,tik->tjk", p, rot) + mu_t


def pa_mpjpe_mm(pred: np.ndarray, target: np.ndarray) -> float:
  return mpjpe_mm(procrustes_align(pred, target), target)


def root_error_mm(pred: np.ndarray, target: np.ndarray) -> float:
  return float(1000.0 * np.linalg.norm(pred[:, 0, [0, 2]] - target[:, 0, [0, 2]], axis=-1).mean())


def jerk_curve(joints: np.ndarray, fps: float) -> np.ndarray:
  """[T,J,3] -> [T-3] mean jerk magnitude over joints, m/s^3."""
  if len(joints) < 4:
    raise ValueError(f"jerk needs at least 4 frames, got {len(joints)}.")
  third = np.diff(joints, n=3, axis=0) * fps ** 3
  return np.linalg.norm(third, axis=-1).mean(-1)


def peak_jerk(joints: np.ndarray, fps: float) -> float:
  return float(jerk_curve(joints, fps).max())


def area_under_jerk(joints: np.ndarray, fps: float) -> float:
  return float(jerk_curve(joints, fps).sum() / fps)


def foot_skating_ratio(joints: np.ndarray, fps: float, height: float = 0.05, speed: float = 0.5) -> float:
  """Fraction of frame transitions in which a toe on the floor slides faster than `speed` m/s."""
  toes = joints[:, TOES]                                  # [T,2,3]
  low = (toes[:-1, :, 1] < height) & (toes[1:, :, 1] < height)
  horizontal = np.linalg.norm(np.diff(toes[:, :, [0, 2]], axis=0), axis=-1) * fps
  return float(np.any(low & (horizontal > speed), axis=-1).mean())


def lowest_foot_height(joints: np.ndarray) -> np.ndarray:
  """[T,J,3] -> [T] height of the lowest foot joint (ankles, toes), metres above y=0."""
  return joints[:, FEET, 1].min(-1)


def penetration_mm(joints: np.ndarray) -> float:
  return float(1000.0 * np.maximum(-lowest_foot_height(joints), 0.0).mean())


def floating_mm(joints: np.ndarray, tolerance: float = FLOAT_TOLERANCE) -> float:
  return float(1000.0 * np.maximum(lowest_foot_height(joints) - tolerance, 0.0).mean())


PHYSICAL_METRICS = ("foot_skating", "peak_jerk", "auj", "penetration_mm", "floating_mm")


def physical_metrics(joints: np.ndarray, fps: float) -> dict[str, float]:
  """Plausibility of one motion [T,22,3] without a reference: PHYSICAL_METRICS (module docstring)."""
  if joints.ndim != 3 or joints.shape[1:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f"physical metrics need joints [T,22,3], got {joints.shape}.")
  return {"foot_skating": foot_skating_ratio(joints, fps), "peak_jerk": peak_jerk(joints, fps),
          "auj": area_under_jerk(joints, fps), "penetration_mm": penetration_mm(joints),
          "floating_mm": floating_mm(joints)}


def mean_physical_metrics(motions: list[np.ndarray], fps: float) -> dict[str, float]:
  """PHYSICAL_METRICS averaged over clips [T_i,22,3] (clips under 4 frames have no jerk: an error)."""
  if not motions:
    raise ValueError("physical metrics of no motions.")
  per_clip = [physical_metrics(j, fps) for j in motions]
  return {k: float(np.mean([m[k] for m in per_clip])) for k in PHYSICAL_METRICS}


def mpjpe_by_window_mm(errors: list[np.ndarray], window: int) -> dict[str, float]:
  """{"mpjpe_mm_frames_A_B": MPJPE over the frames A..B of every clip that has them}.

  errors: per clip, its `frame_errors` [T_i]; windows [0, window), [window, 2 window), ...
  up to the longest clip (the last one may hold fewer clips).
  """
  longest = max(len(e) for e in errors)
  total, count = np.zeros(longest), np.zeros(longest)
  for e in errors:
    total[:len(e)] += e
    count[:len(e)] += 1
  return {f"mpjpe_mm_frames_{a}_{min(a + window, longest) - 1}":
          float(1000.0 * total[a:a + window].sum() / count[a:a + window].sum())
          for a in range(0, longest, window)}


def reconstruction_metrics(pred: np.ndarray, target: np.ndarray, fps: float) -> dict[str, float]:
  """All metrics of a reconstruction against its ground truth (both [T,22,3])."""
  if pred.shape != target.shape or pred.shape[-2:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f"pred {pred.shape} and target {target.shape} must both be [T,22,3].")
  return {
      "mpjpe_mm": mpjpe_mm(pred, target),
      "pa_mpjpe_mm": pa_mpjpe_mm(pred, target),
      "root_error_mm": root_error_mm(pred, target),
      "peak_jerk": peak_jerk(pred, fps), "peak_jerk_gt": peak_jerk(target, fps),
      "auj": area_under_jerk(pred, fps), "auj_gt": area_under_jerk(target, fps),
      "foot_skating": foot_skating_ratio(pred, fps), "foot_skating_gt": foot_skating_ratio(target, fps),
  }
