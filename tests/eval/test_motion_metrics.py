"""Motion metrics on constructed motions with known answers."""
import numpy as np
from scipy.spatial.transform import Rotation

from llamo_jax.eval import motion_metrics as mm


def walking_joints(t=40, fps=20.0, speed=1.0):
  rng = np.random.default_rng(0)
  base = rng.normal(scale=0.3, size=(22, 3)) + [0, 1.0, 0]
  base[[10, 11], 1] = 0.02
  shift = np.zeros((t, 1, 3))
  shift[:, 0, 2] = speed * np.arange(t) / fps
  return base[None] + shift


def test_mpjpe_and_procrustes():
  target = walking_joints()
  pred = target + np.array([0.01, 0.0, 0.0])
  np.testing.assert_allclose(mm.mpjpe_mm(pred, target), 10.0, rtol=1e-9)
  rot = Rotation.from_euler("y", 30, degrees=True).as_matrix()
  moved = 1.3 * np.einsum("ij,tkj->tki", rot, target) + 0.5
  assert mm.mpjpe_mm(moved, target) > 100
  np.testing.assert_allclose(mm.pa_mpjpe_mm(moved, target), 0.0, atol=1e-6)


def test_root_error_uses_the_floor_plane():
  target = walking_joints()
  pred = target.copy()
  pred[:, :, 1] += 0.5                # height does not count
  pred[:, :, 0] += 0.003              # 3 mm sideways does
  np.testing.assert_allclose(mm.root_error_mm(pred, target), 3.0, rtol=1e-9)


def test_jerk_of_constant_velocity_is_zero_and_of_a_spike_is_large():
  joints = walking_joints()
  assert mm.peak_jerk(joints, 20.0) < 1e-6
  spiky = joints.copy()
  spiky[20, 5, 1] += 0.05
  assert mm.peak_jerk(spiky, 20.0) > 10
  assert mm.area_under_jerk(spiky, 20.0) > mm.area_under_jerk(joints, 20.0)


def test_foot_skating_ratio():
  sliding = walking_joints(speed=1.0)       # toes on the floor while the body moves 1 m/s
  assert mm.foot_skating_ratio(sliding, 20.0) == 1.0
  planted = walking_joints(speed=0.0)
  assert mm.foot_skating_ratio(planted, 20.0) == 0.0
  lifted = sliding.copy()
  lifted[:, [10, 11], 1] = 0.2
  assert mm.foot_skating_ratio(lifted, 20.0) == 0.0


def test_mpjpe_by_window_weights_frames_and_covers_the_longest_clip():
  target = [np.zeros((5, 22, 3)), np.zeros((3, 22, 3))]
  pred = [t.copy() for t in target]
  pred[0][:, :, 0] = 0.001 * np.arange(5)[:, None]  # a drift of 1 mm per frame
  pred[1][:, :, 0] = 0.010                          # 10 mm everywhere
  windows = mm.mpjpe_by_window_mm([mm.frame_errors(p, t) for p, t in zip(pred, target)], 2)
  assert list(windows) == ["mpjpe_mm_frames_0_1", "mpjpe_mm_frames_2_3", "mpjpe_mm_frames_4_4"]
  np.testing.assert_allclose(list(windows.values()), [(0 + 1 + 10 + 10) / 4, (2 + 3 + 10) / 3, 4.0])
