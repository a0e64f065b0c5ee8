"""HumanML3D 263-dim features: reproduce the released clip 012314; round trips; jax twin; stats."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.motion import humanml3d, rotations, skeleton
from walking_clip import walking_joints


def _load(clip_dir):
  return (np.load(clip_dir / "new_joint_vecs_012314.npy"), np.load(clip_dir / "new_joints_012314.npy"))


def test_features_to_joints_reproduces_released_joints(humanml3d_clip):
  feats, joints = _load(humanml3d_clip)
  np.testing.assert_allclose(humanml3d.features_to_joints(feats), joints, atol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.jit(humanml3d.features_to_joints_jax)(feats)), joints, atol=1e-5)


# Max abs error of each group over frames 0..99. Later frames differ more (up to 1e-2 in
# ric/rot6d at the last frame) because the released features were smoothed (sigma 20)
# over one more frame than the released joints have.
GROUP_TOLERANCE = {"root_rot_vel": 5e-5, "root_lin_vel": 1e-5, "root_y": 1e-6, "ric": 1e-5,
                   "rot6d": 3e-5, "local_vel": 1e-5, "contacts": 0.0}


def test_joints_to_features_reproduces_released_features(humanml3d_clip):
  feats, joints = _load(humanml3d_clip)
  ours = humanml3d.joints_to_features(joints)
  assert ours.shape == (169, 263) and ours.dtype == np.float32
  for name, sl in humanml3d.GROUPS.items():
    err = np.abs(ours[:100, sl] - feats[:100, sl]).max()
    assert err <= GROUP_TOLERANCE[name], f"{name}: max abs error {err:.2e}"
  # Contacts and root height hold over the whole clip.
  np.testing.assert_array_equal(ours[:, humanml3d.GROUPS["contacts"]], feats[:169, humanml3d.GROUPS["contacts"]])
  np.testing.assert_allclose(ours[:, 3], feats[:169, 3], atol=1e-6)


def test_every_released_row_reproduces_with_the_source_last_frame(humanml3d_clip):
  # The released features came from 171 joint frames; new_joints holds only the first 170
  # (decoded from the features). Frame 170 is recoverable from the last feature row's
  # joint velocities (rotated back by frame 169's facing); with it, every row of every
  # group reproduces, including the tail that the sigma-20 facing smoothing reaches.
  feats, joints = _load(humanml3d_clip)
  feats, joints = feats.astype(np.float64), joints.astype(np.float64)
  half = feats[:-1, 0].sum()  # yaw half-angle of frame 169
  facing = np.array([np.cos(half), 0.0, np.sin(half), 0.0])
  last_vel = feats[-1, humanml3d.GROUPS["local_vel"]].reshape(22, 3)
  extra = joints[-1] + rotations.quat_rotate(rotations.quat_conjugate(facing), last_vel)
  ours = humanml3d.joints_to_features(np.concatenate([joints, extra[None]]))
  assert ours.shape == feats.shape
  tolerance = {"root_rot_vel": 1e-6, "root_lin_vel": 1e-6, "root_y": 1e-6, "ric": 5e-6,
               "rot6d": 2e-5, "local_vel": 5e-6, "contacts": 0.0}
  for name, sl in humanml3d.GROUPS.items():
    err = np.abs(ours[:, sl] - feats[:, sl]).max()
    assert err <= tolerance[name], f"{name}: max abs error {err:.2e} over all rows"


def test_released_std_is_group_averaged(humanml3d_clip):
  mean, std = humanml3d.load_mean_std(humanml3d_clip)
  np.testing.assert_allclose(humanml3d.group_std(std), std, rtol=1e-6)
  rng = np.random.default_rng(0)
  raw = rng.uniform(0.1, 1.0, size=263)
  grouped = humanml3d.group_std(raw)
  np.testing.assert_allclose(grouped[4:67], raw[4:67].mean())
  np.testing.assert_allclose(grouped[259:], raw[259:].mean())
  x = rng.normal(size=(5, 263)).astype(np.float32)
  np.testing.assert_allclose(humanml3d.denormalize(humanml3d.normalize(x, mean, std), mean, std), x, atol=1e-5)


def test_load_mean_std_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="Mean.npy"):
    humanml3d.load_mean_std(tmp_path)
  np.save(tmp_path / "Mean.npy", np.zeros(272))
  np.save(tmp_path / "Std.npy", np.ones(272))
  with pytest.raises(ValueError, match="expected"):
    humanml3d.load_mean_std(tmp_path)


def test_synthetic_round_trip_and_canonical_frame():
  joints = walking_joints(40)
  feats = humanml3d.joints_to_features(joints)
  canon = humanml3d.canonicalize(joints)
  # Canonical frame: on the floor, frame 0 at the xz origin.
  assert abs(canon[..., 1].min()) < 1e-12
  np.testing.assert_allclose(canon[0, 0, [0, 2]], 0, atol=1e-12)
  across = (canon[0, 2] - canon[0, 1]) + (canon[0, 17] - canon[0, 16])
  assert abs(across[2]) < 1e-9 and across[0] < 0  # right is -x, so forward is +Z
  # Same skeleton already: retargeting keeps bone lengths; decoding gives the clip back.
  np.testing.assert_allclose(skeleton.bone_lengths(canon), np.tile(skeleton.BONE_LENGTHS, (40, 1)), atol=1e-9)
  np.testing.assert_allclose(humanml3d.features_to_joints(feats), canon[:-1], atol=1e-5)
  np.testing.assert_allclose(np.asarray(humanml3d.features_to_joints_jax(feats)), canon[:-1], atol=1e-5)


def test_retarget_scales_to_the_target_skeleton():
  joints = walking_joints(10) * 1.3 + np.array([0.5, 0.0, 0.0])
  out = humanml3d.retarget(joints)
  np.testing.assert_allclose(skeleton.bone_lengths(out), np.tile(skeleton.BONE_LENGTHS, (10, 1)), atol=1e-9)
  np.testing.assert_allclose(out[:, 0], joints[:, 0] / 1.3, atol=1e-9)


def test_contacts_follow_foot_speed():
  walk = walking_joints(30)
  joints = np.concatenate([np.repeat(walk[:1], 10, axis=0), walk])  # stand still, then walk
  feats = humanml3d.joints_to_features(joints)
  np.testing.assert_array_equal(feats[:9, 259:263], 1.0)
  assert feats[10:, 259:263].mean() < 0.5  # feet move ~5 cm per frame: mostly no contact
  np.testing.assert_allclose(feats[:9, 1:3], 0.0, atol=1e-9)  # standing: the root does not move
  # (feats[:, 0] is not 0 while standing: the released facing is smoothed over time and r_0 = 1.)


def test_jax_twin_is_differentiable():
  feats = humanml3d.joints_to_features(walking_joints(20))
  grad = jax.grad(lambda f: jnp.sum(humanml3d.features_to_joints_jax(f)[-1, 0, [0, 2]]))(jnp.asarray(feats))
  assert np.all(np.isfinite(grad)) and np.abs(grad[:-1, 1:3]).max() > 0.5


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[T, 263\]"):
    humanml3d.features_to_joints(np.zeros((4, 272)))
  with pytest.raises(ValueError, match=r"\[T, 22, 3\]"):
    humanml3d.joints_to_features(np.zeros((4, 24, 3)))
