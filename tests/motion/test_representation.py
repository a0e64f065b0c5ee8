"""get_representation: one interface over hml263 and mm272."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.motion import representation
from walking_clip import walking_joints, walking_rotations


@pytest.mark.parametrize("name,dim,fps,has_rot", [("hml263", 263, 20, False), ("mm272", 272, 30, True)])
def test_registry(name, dim, fps, has_rot):
  rep = representation.get_representation(name)
  assert (rep.name, rep.dim, rep.fps, rep.has_rotations) == (name, dim, fps, has_rot)


def test_unknown_name_lists_known():
  with pytest.raises(ValueError, match="hml263, mm272"):
    representation.get_representation("smpl")


@pytest.mark.parametrize("name", ["hml263", "mm272"])
def test_joints_round_trip_and_batched_jax(name):
  rep = representation.get_representation(name)
  joints = walking_joints(24, fps=rep.fps)
  f = rep.from_joints(joints)
  assert f.shape == (23, rep.dim)
  decoded = rep.to_joints(f)
  # Decoding gives the clip back up to a rigid move on the floor (the canonical placement):
  # distances within each frame and each joint's per-frame displacement are kept.
  pairwise = lambda x: np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
  np.testing.assert_allclose(pairwise(decoded), pairwise(joints[:-1]), atol=1e-5)
  np.testing.assert_allclose(decoded[:, :, 1] - decoded[:, :1, 1], joints[:-1, :, 1] - joints[:-1, :1, 1], atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.diff(decoded, axis=0), axis=-1),
                             np.linalg.norm(np.diff(joints, axis=0), axis=-1)[:-1], atol=1e-5)
  batch = np.stack([f, f * 1.0])
  out = jax.jit(rep.to_joints_jax)(jnp.asarray(batch))
  assert out.shape == (2, 23, 22, 3)
  np.testing.assert_allclose(np.asarray(out[1]), decoded, atol=1e-5)
  np.testing.assert_allclose(rep.to_joints(batch)[0], decoded, atol=1e-6)


def test_rotations_only_where_available():
  local, root = walking_rotations(10, fps=30)
  mm = representation.get_representation("mm272")
  rec_local, rec_root = mm.to_rotations(mm.from_rotations(local, root))
  assert rec_local.shape == (9, 22, 4) and rec_root.shape == (9, 3)
  hml = representation.get_representation("hml263")
  assert hml.from_rotations(local, root).shape == (9, 263)
  with pytest.raises(ValueError, match="no usable joint rotations"):
    hml.to_rotations(np.zeros((4, 263)))
  with pytest.raises(ValueError, match=r"\[..., T, 272\]"):
    mm.to_joints(np.zeros((4, 263)))
