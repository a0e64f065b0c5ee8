"""A small synthetic walking-and-turning clip built with forward kinematics (shared by motion tests)."""
import numpy as np

from llamo_jax.motion import rotations, skeleton


def walking_rotations(num_frames: int = 40, fps: float = 20.0, turn_rate: float = 0.8,
                      start_heading: float = 0.4, start_xz=(1.5, -2.0)):
  """(local_quats [T,22,4], root_pos [T,3]): walks forward along its heading while turning left."""
  t = np.arange(num_frames) / fps
  phase = 2 * np.pi * 1.2 * t
  aa = np.zeros((num_frames, 22, 3))
  aa[:, 1, 0] = 0.45 * np.sin(phase)          # left hip swings about x
  aa[:, 2, 0] = -0.45 * np.sin(phase)         # right hip
  aa[:, 4, 0] = 0.5 * (1 + np.sin(phase + 1))  # knees bend
  aa[:, 5, 0] = 0.5 * (1 - np.sin(phase + 1))
  aa[:, 7, 0] = -0.2 * np.sin(phase)
  aa[:, 3, 0] = 0.1 + 0.05 * np.sin(2 * phase)  # spine lean
  aa[:, 9, 1] = 0.15 * np.sin(phase)           # torso twist
  aa[:, 16, 2] = -1.2 + 0.1 * np.sin(phase)    # arms down from the T-pose
  aa[:, 17, 2] = 1.2 + 0.1 * np.sin(phase)
  aa[:, 18, 0] = -0.3 * np.sin(phase)
  aa[:, 19, 0] = 0.3 * np.sin(phase)
  aa[:, 12, 0] = 0.1 * np.sin(0.5 * phase)
  heading = start_heading + turn_rate * t
  aa[:, 0] = [0.05, 0.0, 0.03]  # a little pitch/roll, then the heading on top
  local = rotations.axis_angle_to_quat(aa)
  local[:, 0] = rotations.quat_mul(rotations.yaw_quat(heading), local[:, 0])
  speed = 1.1  # m/s along the facing direction
  step = speed / fps * np.stack([np.sin(heading), np.zeros_like(heading), np.cos(heading)], -1)
  root = np.cumsum(step, axis=0) + np.array([start_xz[0], 0.0, start_xz[1]])
  root[:, 1] = 0.92 + 0.02 * np.sin(2 * phase)
  return local, root


def walking_joints(num_frames: int = 40, **kwargs):
  local, root = walking_rotations(num_frames, **kwargs)
  return skeleton.forward_kinematics(local, root)
