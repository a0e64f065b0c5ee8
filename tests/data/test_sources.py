"""Readers of HumanML3D-layout / Motion-X-style folders: sub-clips, validation, skip reasons."""
import json

import numpy as np
import pytest

from llamo_jax.data import sources
import motion_folder


@pytest.fixture
def folder(tmp_path):
  """Six valid clips in train, plus one clip per way of being invalid."""
  root = tmp_path / "hml"
  motion_folder.make_folder(root, num_clips=6, splits=(1.0, 0.0, 0.0))
  rng = np.random.default_rng(1)
  bad = {}
  # NaN in features.
  f = motion_folder.write_clip(root, "nan", 60, rng)
  f[5, 3] = np.nan
  np.save(root / "new_joint_vecs" / "nan.npy", f)
  bad["nan"] = "non_finite"
  # Wrong feature dim.
  motion_folder.write_clip(root, "dim", 60, rng)
  np.save(root / "new_joint_vecs" / "dim.npy", np.zeros((60, 250), np.float32))
  bad["dim"] = "wrong_feature_dim"
  # Too short.
  motion_folder.write_clip(root, "short", 39, rng)
  bad["short"] = "too_short"
  # Empty captions only.
  motion_folder.write_clip(root, "empty", 60, rng, captions=["#x/NOUN#0.0#0.0", "   #y/NOUN#0#0"])
  bad["empty"] = "empty_caption"
  # Missing text.
  motion_folder.write_clip(root, "notext", 60, rng)
  (root / "texts" / "notext.txt").unlink()
  bad["notext"] = "missing_text"
  # Captions that are not UTF-8 (Latin-1 bytes): a counted skip, not a crash.
  motion_folder.write_clip(root, "latin1", 60, rng)
  (root / "texts" / "latin1.txt").write_bytes("une personne s'\xe9lance#x/NOUN#0.0#0.0".encode("latin-1"))
  bad["latin1"] = "unreadable_text"
  # Corrupt npy.
  motion_folder.write_clip(root, "corrupt", 60, rng)
  (root / "new_joint_vecs" / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
  bad["corrupt"] = "unreadable_file"
  # Listed but absent.
  bad["absent"] = "missing_motion"
  # Joints of the wrong shape.
  motion_folder.write_clip(root, "joints", 60, rng)
  np.save(root / "new_joints" / "joints.npy", np.zeros((61, 24, 3), np.float32))
  bad["joints"] = "bad_joints"
  ids = (root / "train.txt").read_text().split()
  motion_folder.write_splits(root, {"train": ids + list(bad), "val": ids[:1]})
  return root, ids, bad


def test_valid_clips_and_skip_reasons(folder):
  root, ids, bad = folder
  src = sources.HumanML3DSource(root, "hml263")
  report = sources.SkipReport()
  clips = list(src.iter_split("train", report))
  assert [c.clip_id for c in clips] == ids
  for reason in sources.SKIP_REASONS:
    expected = sum(1 for r in bad.values() if r == reason)
    assert report.count("train", reason) == expected, reason
  assert {d["id"]: d["reason"] for d in report.details} == bad
  assert report.written["train"] == len(ids)
  summary = report.to_dict()
  assert summary["skipped_total"] == len(bad)
  assert summary["skipped_caption_lines"] == {"empty_caption": 2}
  json.dumps(summary)  # the report is JSON-able


def test_clip_contents(folder):
  root, ids, _ = folder
  src = sources.HumanML3DSource(root, "hml263")
  clip = next(src.iter_split("val", sources.SkipReport()))
  np.testing.assert_array_equal(clip.features, np.load(root / "new_joint_vecs" / f"{ids[0]}.npy"))
  np.testing.assert_array_equal(clip.joints, np.load(root / "new_joints" / f"{ids[0]}.npy"))
  assert clip.joints.shape[0] == clip.length + 1
  assert len(clip.captions) == 2 and all(c.startswith("a person ") for c in clip.captions)
  assert json.loads(clip.attributes)["id"] == ids[0]
  assert src.fps == 20.0


def test_subclips_from_caption_spans(tmp_path):
  root = tmp_path / "hml"
  motion_folder.make_folder(root, num_clips=1, splits=(1.0, 0.0, 0.0))
  rng = np.random.default_rng(0)
  lines = [motion_folder.caption_line("a person walks"),
           motion_folder.caption_line("a person waves", 1.0, 4.5),
           motion_folder.caption_line("someone waves a hand", 1.0, 4.5),
           motion_folder.caption_line("a person jumps", 5.0, 6.0),     # 20 frames: too short
           motion_folder.caption_line("a person kicks", 3.0, 99.0)]    # clipped to the end
  features = motion_folder.write_clip(root, "000000", 150, rng, captions=lines)
  joints = np.load(root / "new_joints" / "000000.npy")
  report = sources.SkipReport()
  clips = {c.clip_id: c for c in sources.HumanML3DSource(root).iter_split("train", report)}
  assert sorted(clips) == ["000000", "000000:20-90", "000000:60-150"]
  sub = clips["000000:20-90"]
  assert sub.captions == ("a person waves", "someone waves a hand")
  np.testing.assert_array_equal(sub.features, features[20:90])
  np.testing.assert_array_equal(sub.joints, joints[20:91])
  assert sub.source_id == "000000"
  assert clips["000000"].captions == ("a person walks",)
  assert report.count("train", "too_short") == 1
  assert report.details[0]["id"] == "000000:100-120"


def test_mm272_representation(folder):
  root, ids, _ = folder
  src = sources.HumanML3DSource(root, "mm272")
  clip = next(src.iter_split("val", sources.SkipReport()))
  assert clip.features.shape[1] == 272
  mean, std = src.stats_files()
  assert mean.shape == std.shape == (272,)


def test_motionx_folder(tmp_path):
  root = tmp_path / "mx"
  (root / "motion").mkdir(parents=True)
  (root / "texts").mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    np.save(root / "motion" / f"m{i}.npy", rng.normal(size=(50, 272)).astype(np.float32))
    (root / "texts" / f"m{i}.txt").write_text(f"a person does thing {i}\nanother caption\n")
  src = sources.open_source(root, "motionx", "mm272")
  assert src.split_names() == ["train"] and src.fps == 30.0
  assert src.stats_files() is None
  clips = list(src.iter_split("train", sources.SkipReport()))
  assert [c.clip_id for c in clips] == ["m0", "m1", "m2"]
  assert clips[1].captions == ("a person does thing 1", "another caption")
  assert clips[0].joints.shape == (0, 22, 3)


def test_clear_errors(tmp_path, folder):
  root, _, _ = folder
  with pytest.raises(ValueError, match="Unknown representation"):
    sources.HumanML3DSource(root, "hml999")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sources.HumanML3DSource(tmp_path / "nope")
  with pytest.raises(ValueError, match="Unknown source format"):
    sources.open_source(root, "amass")
  np.save(root / "Std.npy", np.zeros(263, np.float32))
  with pytest.raises(ValueError, match="non-positive"):
    sources.HumanML3DSource(root).stats_files()


def test_released_humanml3d_clip(tmp_path, humanml3d_clip):
  """The released clip 012314 laid out as a HumanML3D folder reads back unchanged."""
  root = tmp_path / "hml"
  for sub in ("new_joint_vecs", "new_joints", "texts"):
    (root / sub).mkdir(parents=True)
  features = np.load(humanml3d_clip / "new_joint_vecs_012314.npy")
  joints = np.load(humanml3d_clip / "new_joints_012314.npy")
  np.save(root / "new_joint_vecs" / "012314.npy", features)
  np.save(root / "new_joints" / "012314.npy", joints)
  for name in ("Mean.npy", "Std.npy"):
    (root / name).write_bytes((humanml3d_clip / name).read_bytes())
  (root / "texts" / "012314.txt").write_text(motion_folder.caption_line("a person walks") + "\n")
  motion_folder.write_splits(root, {"test": ["012314"]})
  src = sources.HumanML3DSource(root)
  (clip,) = src.iter_split("test", sources.SkipReport())
  np.testing.assert_array_equal(clip.features, features)
  np.testing.assert_array_equal(clip.joints, joints)
  mean, std = src.stats_files()
  assert mean.shape == std.shape == (263,)
