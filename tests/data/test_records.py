"""build_records: round trip through ArrayRecord, statistics, report, overwrite and atomicity."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from llamo_jax.data import record_builder
from llamo_jax.data import records
from llamo_jax.data import sources
from llamo_jax.motion import mirror
import motion_folder


@pytest.fixture
def source(tmp_path):
  root = tmp_path / "hml"
  split_ids = motion_folder.make_folder(root, num_clips=12)
  # One bad clip in train, so the report has something to count.
  motion_folder.write_clip(root, "short", 30, np.random.default_rng(3))
  motion_folder.write_splits(root, {**split_ids, "train": split_ids["train"] + ["short"]})
  return root, split_ids


def test_round_trip(tmp_path, source):
  root, split_ids = source
  summary = record_builder.build_records(root, tmp_path / "out", name="tiny")
  ds = records.open_dataset(tmp_path / "out" / "tiny")
  assert ds.representation == "hml263" and ds.dim == 263 and ds.fps == 20.0
  assert dict(ds.split_sizes) == {k: len(v) for k, v in split_ids.items()}
  assert summary["skipped"] == {"train": {"too_short": 1}}
  assert summary["skipped_examples"][0]["id"] == "short"
  np.testing.assert_array_equal(ds.mean, np.load(root / "Mean.npy"))
  np.testing.assert_array_equal(ds.std, np.load(root / "Std.npy"))
  expected = list(sources.HumanML3DSource(root).iter_split("train", sources.SkipReport()))
  src = ds.data_source("train")
  assert len(src) == len(expected)
  for i, clip in enumerate(expected):
    got = records.decode(src[i])
    assert got["clip_id"] == clip.clip_id and got["source_id"] == clip.source_id
    np.testing.assert_array_equal(got["features"], clip.features)
    np.testing.assert_array_equal(got["joints"], clip.joints)
    assert got["captions"] == list(clip.captions)
    assert got["length"] == clip.length
    assert json.loads(got["attributes"]) == json.loads(clip.attributes)
  assert not (tmp_path / "out" / "tiny" / "downloads").exists()
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny"]  # no temp dir left


def test_statistics_computed_when_absent(tmp_path, source):
  root, _ = source
  (root / "Mean272.npy").unlink()
  (root / "Std272.npy").unlink()
  summary = record_builder.build_records(root, tmp_path / "out", representation="mm272", name="t272")
  ds = records.open_dataset(tmp_path / "out" / "t272")
  frames = np.concatenate([c.features for c in sources.HumanML3DSource(root, "mm272")
                           .iter_split("train", sources.SkipReport())])
  np.testing.assert_allclose(ds.mean, frames.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ds.std, frames.std(0), rtol=1e-4)
  assert "computed over" in summary["stats"]


def test_refuses_overwrite_and_failure_leaves_nothing(tmp_path, source, monkeypatch):
  root, _ = source
  out = tmp_path / "out"
  record_builder.build_records(root, out, name="tiny")
  with pytest.raises(FileExistsError, match="--overwrite"):
    record_builder.build_records(root, out, name="tiny")
  before = records.open_dataset(out / "tiny").split_sizes

  def boom(*a, **k):
    raise RuntimeError("disk full")
  monkeypatch.setattr(records, "write_splits", boom)
  with pytest.raises(RuntimeError, match="disk full"):
    record_builder.build_records(root, out, name="tiny", overwrite=True)
  assert sorted(p.name for p in out.iterdir()) == ["tiny"]
  assert records.open_dataset(out / "tiny").split_sizes == before
  monkeypatch.undo()
  record_builder.build_records(root, out, name="tiny", overwrite=True, splits=["val"])
  assert dict(records.open_dataset(out / "tiny").split_sizes) == {"val": before["val"]}
  assert sorted(p.name for p in out.iterdir()) == ["tiny"]


def test_cli(tmp_path, source):
  root, _ = source
  result = subprocess.run(
      [sys.executable, "-m", "data_pipelines.build_records", f"--source={root}",
       f"--out={tmp_path / 'out'}", "--name=cli"], capture_output=True, text=True, check=True)
  assert "written" in result.stdout and "too_short=1" in result.stdout
  assert (tmp_path / "out" / "cli" / records.REPORT_FILE).is_file()
  assert records.open_dataset(tmp_path / "out" / "cli").split_sizes["train"] == 9


def test_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="build_records"):
    records.open_dataset(tmp_path)


def test_empty_split_is_recorded_not_written(tmp_path, source):
  root, split_ids = source
  motion_folder.write_splits(root, {**split_ids, "val": ["short"]})
  summary = record_builder.build_records(root, tmp_path / "out", name="tiny")
  assert summary["split_sizes"]["val"] == 0 and summary["skipped"]["val"] == {"too_short": 1}
  ds = records.open_dataset(tmp_path / "out" / "tiny")
  with pytest.raises(ValueError, match="is empty"):
    ds.data_source("val")
  assert len(ds.data_source("test")) == len(split_ids["test"])


def test_mirrored_train_clips(tmp_path, source):
  root, split_ids = source
  summary = record_builder.build_records(root, tmp_path / "out", name="mirrored", mirror=True)
  ds = records.open_dataset(tmp_path / "out" / "mirrored")
  assert summary["mirrored_train"] and ds.split_sizes["train"] == 2 * len(split_ids["train"])
  assert ds.split_sizes["val"] == len(split_ids["val"]) and ds.split_sizes["test"] == len(split_ids["test"])
  src = ds.data_source("train")
  by_id = {r["clip_id"]: r for r in (records.decode(src[i]) for i in range(len(src)))}
  for clip_id in split_ids["train"]:
    clip, image = by_id[clip_id], by_id["M" + clip_id]
    np.testing.assert_allclose(image["joints"], mirror.mirror_joints(clip["joints"]))
    np.testing.assert_allclose(image["features"], mirror.mirror_features(clip["joints"], "hml263"), atol=1e-6)
    assert image["captions"] == [mirror.mirror_text(c) for c in clip["captions"]]


@pytest.mark.slow
def test_killed_build_records_leaves_nothing_that_looks_complete_and_a_rerun_finishes(tmp_path):
  root = tmp_path / "hml"
  motion_folder.make_folder(root, num_clips=400, min_frames=150, max_frames=300)
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "data_pipelines.build_records", f"--source={root}", f"--out={out}", "--name=big"]
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:  # kill -9 once records are being written
    if any(p.is_file() for p in out.glob(".big.tmp-*/**/*")):
      break
    time.sleep(0.02)
  assert proc.poll() is None, "build_records finished before it could be killed"
  proc.kill()
  proc.wait()
  assert not (out / "big").exists()
  with pytest.raises(FileNotFoundError):
    records.open_dataset(out / "big")
  subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
  assert sum(records.open_dataset(out / "big").split_sizes.values()) == 400
