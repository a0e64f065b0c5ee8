"""Rotation math: round trips, agreement of numpy and jax, known rotations."""
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from llamo_jax.motion import rotations as R


def random_quats(n, seed=0):
  q = np.random.default_rng(seed).normal(size=(n, 4))
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_quat_matrix_round_trip_and_scipy_agreement():
  q = random_quats(64)
  m = R.quat_to_matrix(q)
  ref = Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], -1)).as_matrix()
  np.testing.assert_allclose(m, ref, atol=1e-12)
  q2 = R.matrix_to_quat(m)
  np.testing.assert_allclose(np.abs(np.sum(q * q2, -1)), 1.0, atol=1e-12)
  assert np.all(q2[:, 0] >= 0)


def test_quat_mul_composes_like_matrices():
  a, b = random_quats(16, 1), random_quats(16, 2)
  np.testing.assert_allclose(R.quat_to_matrix(R.quat_mul(a, b)),
                             R.quat_to_matrix(a) @ R.quat_to_matrix(b), atol=1e-12)
  v = np.random.default_rng(3).normal(size=(16, 3))
  np.testing.assert_allclose(R.quat_rotate(a, v), np.einsum("nij,nj->ni", R.quat_to_matrix(a), v), atol=1e-12)
  np.testing.assert_allclose(R.quat_mul(a, R.quat_inverse(a)), np.tile([1.0, 0, 0, 0], (16, 1)), atol=1e-12)


@pytest.mark.parametrize("convention", ["cols", "rows"])
def test_6d_round_trip(convention):
  m = R.quat_to_matrix(random_quats(32, 4))
  d6 = R.matrix_to_6d(m, convention)
  np.testing.assert_allclose(R.sixd_to_matrix(d6, convention), m, atol=1e-12)
  first = m[:, :, 0] if convention == "cols" else m[:, 0, :]
  np.testing.assert_allclose(d6[:, :3], first)


def test_axis_angle_and_yaw():
  aa = np.random.default_rng(5).normal(size=(32, 3))
  small = aa / np.linalg.norm(aa, axis=-1, keepdims=True) * np.linspace(0.01, 3.1, 32)[:, None]
  np.testing.assert_allclose(R.quat_to_axis_angle(R.axis_angle_to_quat(small)), small, atol=1e-9)
  ref = Rotation.from_rotvec(aa).as_matrix()
  np.testing.assert_allclose(R.axis_angle_to_matrix(aa), ref, atol=1e-12)
  np.testing.assert_allclose(R.quat_rotate(R.yaw_quat(np.pi / 2), np.array([0.0, 0, 1])), [1.0, 0, 0], atol=1e-12)
  np.testing.assert_allclose(R.axis_angle_to_matrix(np.zeros(3)), np.eye(3))


def test_quat_between_and_slerp():
  u = np.random.default_rng(6).normal(size=(32, 3))
  v = np.random.default_rng(7).normal(size=(32, 3))
  q = R.quat_between(u, v)
  np.testing.assert_allclose(R.quat_rotate(q, u / np.linalg.norm(u, axis=-1, keepdims=True)),
                             v / np.linalg.norm(v, axis=-1, keepdims=True), atol=1e-9)
  q_opp = R.quat_between(np.array([0.0, 1, 0]), np.array([0.0, -1, 0]))
  np.testing.assert_allclose(R.quat_rotate(q_opp, np.array([0.0, 1, 0])), [0, -1, 0], atol=1e-9)
  a, b = random_quats(8, 8), random_quats(8, 9)
  np.testing.assert_allclose(np.abs(np.sum(R.slerp(a, b, 0.0) * a, -1)), 1, atol=1e-9)
  np.testing.assert_allclose(np.abs(np.sum(R.slerp(a, b, 1.0) * b, -1)), 1, atol=1e-9)
  # Halfway along the arc: equal angles to both ends, half the total angle.
  angle = lambda p, q: 2 * np.arccos(np.clip(np.abs(np.sum(p * q, -1)), 0, 1))
  mid = R.slerp(a, b, 0.5)
  np.testing.assert_allclose(angle(a, mid), angle(a, b) / 2, atol=1e-9)
  np.testing.assert_allclose(angle(mid, b), angle(a, b) / 2, atol=1e-9)
  # t with the quaternions' batch shape gets a trailing axis; slerp of yaws is a linear yaw.
  start, end = R.yaw_quat(np.zeros(2)), R.yaw_quat(np.full(2, 0.2))
  np.testing.assert_allclose(R.slerp(start, end, np.array([0.25, 0.5])), R.yaw_quat(np.array([0.05, 0.1])),
                             atol=1e-12)


def test_jax_twins_match_numpy():
  q = random_quats(16, 10)
  m = R.quat_to_matrix(q)
  np.testing.assert_allclose(np.asarray(R.quat_to_matrix(jnp.asarray(q, jnp.float32))), m, atol=1e-6)
  np.testing.assert_allclose(np.asarray(R.matrix_to_quat(jnp.asarray(m, jnp.float32))), R.matrix_to_quat(m), atol=1e-5)
  d6 = R.matrix_to_6d(m, "rows")
  np.testing.assert_allclose(np.asarray(R.sixd_to_matrix(jnp.asarray(d6, jnp.float32), "rows")), m, atol=1e-5)
