"""Upper-body channel: spine, head and arms as local rotations [T, 13, 4] (rig.UPPER_JOINTS).

Arm poses are given per side in a *canonical* chest frame whose +X points
outward from that side (so one description serves the left and the right arm):
wrist targets are relative to the shoulder joint, poles say where the elbow
points. The chest frame is the frame of spine3 (joint 9): at zero spine angles
it is the pelvis frame (Y up, Z forward).
"""
import numpy as np

from llamo_jax.synthetic import rig

REST_FORWARD = np.deg2rad(8.0)  # Arms hang slightly forward and away from the body.
REST_OUT = np.deg2rad(9.0)
REST_REACH = 0.97  # Elbows a little bent.


def arm_direction(forward: np.ndarray, out: np.ndarray) -> np.ndarray:
  """Unit arm direction [..., 3] (canonical frame) raised `forward` and `out` (radians) from hanging."""
  forward, out = np.broadcast_arrays(np.asarray(forward, np.float64), np.asarray(out, np.float64))
  return np.stack([np.sin(out), -np.cos(out) * np.cos(forward), np.cos(out) * np.sin(forward)], -1)


def rest_arm(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
  """Canonical (wrist [n, 3], pole [n, 3]) of an arm hanging at rest."""
  reach = REST_REACH * rig.body().arm[side]
  wrist = np.broadcast_to(arm_direction(REST_FORWARD, REST_OUT) * reach, (n, 3)).copy()
  pole = np.broadcast_to(np.array([0.15, 0.0, -1.0]), (n, 3)).copy()
  return wrist, pole


def mirror(v: np.ndarray, side: int) -> np.ndarray:
  """Canonical (outward = +X) vectors -> chest-frame vectors for `side` (0 left, 1 right)."""
  return v * np.array([rig.SIDE_SIGN[side], 1.0, 1.0])


def upper_pose(n: int, *, wrists: list[np.ndarray] | None = None,
               poles: list[np.ndarray] | None = None,
               spine_pitch=0.0, spine_yaw=0.0, spine_roll=0.0,
               head_pitch=0.0, head_yaw=0.0) -> np.ndarray:
  """Local rotations of the upper-body joints, [n, 13, 4] quaternions (w, x, y, z).

  Args:
    n: frames.
    wrists, poles: per side (left, right) canonical wrist targets / elbow poles,
      [n, 3] each; None = the rest pose.
    spine_*: trunk pitch (+ leans forward), yaw (+ twists left), roll
      (+ bends right), radians, scalars or [n]; spread over the three spine joints.
    head_pitch (+ looks down), head_yaw (+ looks left): radians, scalars or [n].
  """
  b = rig.body()
  local = np.broadcast_to(np.eye(3), (n, len(rig.UPPER_JOINTS), 3, 3)).copy()
  full = lambda x: np.broadcast_to(np.asarray(x, np.float64), (n,))
  pitch, yaw, roll = full(spine_pitch), full(spine_yaw), full(spine_roll)
  for joint, share in ((3, 0.3), (6, 0.35), (9, 0.35)):
    local[:, rig.UPPER_INDEX[joint]] = (
        rig.axis_rotation(1, share * yaw) @ rig.axis_rotation(0, share * pitch)
        @ rig.axis_rotation(2, share * roll))
  local[:, rig.UPPER_INDEX[12]] = (
      rig.axis_rotation(1, full(head_yaw)) @ rig.axis_rotation(0, full(head_pitch)) @ b.neck_align)
  for side, (collar, shoulder, elbow, _) in enumerate(rig.ARM):
    local[:, rig.UPPER_INDEX[collar]] = b.collar_align[side]
    wrist, pole = rest_arm(n, side)
    if wrists is not None and wrists[side] is not None:
      wrist = wrists[side]
    if poles is not None and poles[side] is not None:
      pole = poles[side]
    s, e = rig.arm_rotations(side, mirror(wrist, side), mirror(pole, side))
    local[:, rig.UPPER_INDEX[shoulder]] = s
    local[:, rig.UPPER_INDEX[elbow]] = e
  return rig.to_local_quats(local)
