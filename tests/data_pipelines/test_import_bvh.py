"""import_bvh: a folder of BVH files (+ captions, + a broken file) -> HumanML3D layout + report."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import import_bvh
from llamo_jax.motion import humanml3d
from llamo_jax.motion.bvh import export as bvh_export
from llamo_jax.motion.bvh import format as bvh_format

REPO = pathlib.Path(__file__).resolve().parents[2]


def _walking_bvh(num_frames: int, fps: float, unit: str, order: str,
                 seed: int) -> bvh_format.BvhMotion:
  """Our hierarchy, arms and legs swinging, root moving forward along +Z."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_frames) / fps
  quats = np.zeros((num_frames, 22, 4))
  quats[..., 0] = 1.0
  swing = 0.4 * np.sin(2 * np.pi * t + rng.uniform(0, 1))
  for joint, sign in ((1, 1), (2, -1), (16, -1), (17, 1)):  # hips and shoulders about X
    quats[:, joint, 0] = np.cos(sign * swing / 2)
    quats[:, joint, 1] = np.sin(sign * swing / 2)
  root = np.stack([0.05 * np.sin(t), 0.93 + 0.02 * np.cos(4 * t), 1.2 * t], axis=-1)
  return bvh_export.motion_from_rotations(quats, root, fps=fps, unit=unit, order=order)


@pytest.fixture
def bvh_folder(tmp_path):
  src = tmp_path / "src"
  bvh_format.write_bvh(src / "walk_a.bvh", _walking_bvh(61, 60.0, "cm", "ZXY", 0))
  (src / "walk_a.txt").write_text("A person walks forward.\n\n  someone strolls ahead # slowly\n")
  bvh_format.write_bvh(src / "sub" / "walk_b.bvh", _walking_bvh(45, 30.0, "m", "XYZ", 1))
  good = (src / "walk_a.bvh").read_text().splitlines()
  (src / "broken.bvh").write_text("\n".join(good[:-5]) + "\n")  # truncated frame data
  return src


def test_cli_builds_the_layout_and_reports_the_broken_file(bvh_folder, tmp_path):
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipelines.import_bvh", f"--input={bvh_folder}",
       f"--out={out}", "--fps=20"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "FAILED" in proc.stdout and "broken.bvh" in proc.stdout

  report = json.loads((out / "import_report.json").read_text())
  assert sorted(report["converted"]) == ["sub_walk_b", "walk_a"]
  (failed_file, reason), = report["failed"].items()
  assert failed_file.endswith("broken.bvh") and "truncated" in reason
  assert report["without_captions"] == [str(bvh_folder / "sub" / "walk_b.bvh")]

  # 61 frames at 60 fps -> 21 at 20 fps -> 20 feature frames; 45 at 30 -> 30 -> 29.
  for clip, frames in (("walk_a", 20), ("sub_walk_b", 29)):
    vecs = np.load(out / "new_joint_vecs" / f"{clip}.npy")
    joints = np.load(out / "new_joints" / f"{clip}.npy")
    assert vecs.shape == (frames, 263) and joints.shape == (frames, 22, 3)
    np.testing.assert_allclose(joints, humanml3d.features_to_joints(vecs), atol=1e-5)
  assert np.load(out / "Mean.npy").shape == (263,) and np.load(out / "Std.npy").shape == (263,)
  lines = (out / "texts" / "walk_a.txt").read_text().splitlines()
  assert lines == ["A person walks forward.#a/OTHER person/OTHER walks/OTHER forward/OTHER#0.0#0.0",
                   "someone strolls ahead slowly#someone/OTHER strolls/OTHER ahead/OTHER "
                   "slowly/OTHER#0.0#0.0"]
  assert not (out / "texts" / "sub_walk_b.txt").exists()
  ids = sum(((out / f"{s}.txt").read_text().split() for s in ("train", "val", "test")), [])
  assert sorted(ids) == ["sub_walk_b", "walk_a"]
  meta = json.loads((out / "corpus.json").read_text())
  assert meta["representations"]["hml263"]["dim"] == 263 and meta["failed"] == 1


def test_walking_clip_features_move_forward(bvh_folder, tmp_path):
  import_bvh.import_folder(bvh_folder / "walk_a.bvh", tmp_path / "one", fps=20)
  joints = np.load(tmp_path / "one" / "new_joints" / "walk_a.npy")
  # 1 s at 1.2 m/s: the root travels about 1.2 m; the floor is at y = 0.
  travelled = np.linalg.norm(joints[-1, 0, [0, 2]] - joints[0, 0, [0, 2]])
  assert 1.0 < travelled < 1.3
  assert abs(joints[..., 1].min()) < 0.05


def test_mm272_features(bvh_folder, tmp_path):
  out = tmp_path / "o272"
  import_bvh.import_folder(bvh_folder / "walk_a.bvh", out, fps=30,
                           representations=("hml263", "mm272"))
  assert np.load(out / "vecs272" / "walk_a.npy").shape == (30, 272)
  assert np.load(out / "Mean272.npy").shape == (272,)


def test_nothing_converts_is_an_error(bvh_folder, tmp_path):
  with pytest.raises(ValueError, match="broken.bvh"):
    import_bvh.import_folder(bvh_folder / "broken.bvh", tmp_path / "none")
  with pytest.raises(ValueError, match="representation"):
    import_bvh.import_folder(bvh_folder, tmp_path / "x", representations=("hml264",))


def test_split_is_seeded_and_complete():
  ids = [f"c{i}" for i in range(20)]
  a = import_bvh.split_ids(ids, (0.8, 0.1, 0.1), seed=0)
  assert a == import_bvh.split_ids(ids, (0.8, 0.1, 0.1), seed=0)
  assert [len(a[s]) for s in ("train", "val", "test")] == [16, 2, 2]
  assert sorted(sum(a.values(), [])) == sorted(ids)
  assert import_bvh.split_ids(["only"], (0.8, 0.1, 0.1), 0)["train"] == ["only"]
