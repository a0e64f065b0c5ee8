"""`python -m llamo_jax.render`: input detection, denormalisation, outputs."""
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from fake_gcs import fake_gcs
from llamo_jax import render
from llamo_jax.core import paths
from llamo_jax.motion import files
from llamo_jax.motion import representation
from llamo_jax.motion import skeleton
from llamo_jax.motion.bvh import format as bvh_format
from tests.motion.walking_clip import walking_joints

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_cli_gif_from_normalised_features(humanml3d_clip, tmp_path):
  feats = np.load(humanml3d_clip / "new_joint_vecs_012314.npy")[:6]
  mean, std = np.load(humanml3d_clip / "Mean.npy"), np.load(humanml3d_clip / "Std.npy")
  np.save(tmp_path / "m.npy", (feats - mean) / std)
  out = tmp_path / "m.gif"
  proc = subprocess.run([sys.executable, "-m", "llamo_jax.render", f"--motion={tmp_path / 'm.npy'}",
                         f"--out={out}", f"--mean_std_dir={humanml3d_clip}", "--caption=hello"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with Image.open(out) as gif:
    assert gif.n_frames == 6


def test_detects_by_shape_and_rejects_unknown_shapes():
  assert files.detect_representation(np.zeros((5, 22, 3))) == "joints"
  assert files.detect_representation(np.zeros((5, 263))) == "hml263"
  assert files.detect_representation(np.zeros((5, 272))) == "mm272"
  with pytest.raises(files.MotionFileError, match=r"\[T, 263\]"):
    files.detect_representation(np.zeros((2, 5, 263)))


def test_load_motion_denormalises_and_checks(humanml3d_clip, tmp_path):
  feats = np.load(humanml3d_clip / "new_joint_vecs_012314.npy")[:10]
  mean, std = np.load(humanml3d_clip / "Mean.npy"), np.load(humanml3d_clip / "Std.npy")
  np.save(tmp_path / "n.npy", (feats - mean) / std)
  array, name, fps = files.load_motion(tmp_path / "n.npy", mean_std_dir=humanml3d_clip)
  assert name == "hml263" and fps == 20
  np.testing.assert_allclose(array, feats, atol=1e-4)
  with pytest.raises(files.MotionFileError, match="mm272"):
    files.load_motion(tmp_path / "n.npy", representation="mm272")
  with pytest.raises(files.MotionFileError, match="272-dim Mean/Std"):
    np.save(tmp_path / "f.npy", np.zeros((4, 272), np.float32))
    files.load_motion(tmp_path / "f.npy", mean_std_dir=humanml3d_clip)


def test_bvh_out_and_back(humanml3d_clip, tmp_path):
  joints = np.load(humanml3d_clip / "new_joints_012314.npy")[:8]
  motion = files.to_bvh(joints, "joints", fps=20)
  path = bvh_format.write_bvh(tmp_path / "x.bvh", motion)
  back, name, fps = files.load_motion(path)
  assert name == "joints" and fps == 20 and back.shape == joints.shape
  # The BVH holds inverse kinematics on our skeleton: forward kinematics of that.
  ik = skeleton.inverse_kinematics(joints)
  np.testing.assert_allclose(back, skeleton.forward_kinematics(ik, joints[:, 0]), atol=1e-4)


def test_272_features_export_their_rotations_exactly(tmp_path):
  """mm272 -> BVH keeps the true rotations: importing gives rep272.to_joints to 1e-4 m."""
  rng = np.random.default_rng(0)
  num_frames = 10
  axis_angle = rng.normal(0, 0.3, (num_frames, 22, 3))
  angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
  quats = np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * axis_angle / angle], axis=-1)
  root = np.stack([np.linspace(0, 1, num_frames), np.full(num_frames, 0.9),
                   np.linspace(0, 0.5, num_frames)], axis=-1)
  feats = representation.get_representation("mm272").from_rotations(quats, root)
  path = bvh_format.write_bvh(tmp_path / "r.bvh",
                              files.to_bvh(feats, "mm272", fps=30, unit="m"))
  back, _, fps = files.load_motion(path)
  assert fps == 30
  want = files.to_joints(feats, "mm272")
  np.testing.assert_allclose(back, want, atol=1e-4)


def test_cli_reads_and_writes_gcs(tmp_path, monkeypatch):
  """--motion, --out and --mean_std_dir on gs:// (a fake bucket only epath reaches): gif, png and bvh."""
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  rep = representation.get_representation("hml263")
  feats = np.asarray(rep.from_joints(walking_joints(7)), np.float32)  # 6 frames
  mean, std = feats.mean(0), feats.std(0) + 0.1
  flag_values = dict(motion="gs://b/in/walk.npy", caption="walks", representation="auto",
                     mean_std_dir="gs://b/stats", fps=None, num_frames=3, unit="auto", up="y", mapping=None,
                     bvh_unit="cm", bvh_order="ZXY")
  with fake_gcs(tmp_path / "bucket"):
    paths.save_npy("gs://b/in/walk.npy", (feats - mean) / std)
    paths.save_npy("gs://b/stats/Mean.npy", mean)
    paths.save_npy("gs://b/stats/Std.npy", std)
    for out in ("gs://b/out/walk.gif", "gs://b/out/walk.png", "gs://b/out/walk.bvh"):
      monkeypatch.setattr(render.flags, "FLAGS", types.SimpleNamespace(out=out, **flag_values))
      render.main(["render"])
    back, name, fps = files.load_motion("gs://b/out/walk.bvh")
  out = tmp_path / "bucket" / "gs:" / "b" / "out"
  assert sorted(p.name for p in out.iterdir()) == ["walk.bvh", "walk.gif", "walk.png"]
  with Image.open(out / "walk.gif") as gif:
    assert gif.n_frames == 6
  with Image.open(out / "walk.png") as png:
    assert png.format == "PNG"
  assert (name, fps, back.shape) == ("joints", 20, (6, 22, 3))
  np.testing.assert_allclose(back[:, 0], files.to_joints(feats, "hml263")[:, 0], atol=1e-3)  # denormalised
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
