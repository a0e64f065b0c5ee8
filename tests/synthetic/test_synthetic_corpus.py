"""The corpus folder: layout, shapes, statistics, splits, zero-shot hold-out, determinism, CLI."""
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

from llamo_jax.synthetic import captions
from llamo_jax.synthetic import corpus
from llamo_jax.motion import humanml3d
from llamo_jax.motion import rep272

N = 16
HOLDOUT = "walk:forward,clap"
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = tmp_path_factory.mktemp("synth")
  cfg = corpus.Config(num_motions=N, seed=7, holdout=corpus.parse_holdout(HOLDOUT))
  meta = corpus.build(out, cfg)
  return out, meta


def _ids(path):
  return [l for l in path.read_text().split("\n") if l]


def test_every_file_present_and_shaped(built):
  out, meta = built
  ids = [corpus.clip_id(i) for i in range(N)]
  for cid in ids:
    joints = np.load(out / "new_joints" / f"{cid}.npy")
    t = joints.shape[0]
    assert joints.shape == (t, 22, 3) and 40 <= t <= 196 and joints.dtype == np.float32
    assert np.load(out / "new_joint_vecs" / f"{cid}.npy").shape == (t - 1, 263)
    assert np.load(out / "vecs272" / f"{cid}.npy").shape == (t - 1, 272)
    attrs = json.loads((out / "attributes" / f"{cid}.json").read_text())
    assert attrs["num_frames"] == t and attrs["fps"] == 20 and attrs["id"] == cid
    for seg in attrs["segments"]:
      assert {"action", "side", "count", "speed", "direction", "distance", "angle", "start",
              "end"} <= set(seg)
    assert attrs["segments"][-1]["end"] == t
  for name, dim in (("Mean.npy", 263), ("Std.npy", 263), ("Mean272.npy", 272), ("Std272.npy", 272)):
    arr = np.load(out / name)
    assert arr.shape == (dim,) and np.isfinite(arr).all()
  std = np.load(out / "Std.npy")
  for group in humanml3d.GROUPS.values():
    assert np.ptp(std[group]) == 0.0  # HumanML3D averages the std within each group
  assert (std > 0).all() and (np.load(out / "Std272.npy") > 0).all()
  assert meta == json.loads((out / "corpus.json").read_text())
  assert meta["num_motions"] == N and meta["fps"] == 20 and meta["seed"] == 7


def test_mean_is_the_train_mean(built):
  out, _ = built
  train = _ids(out / "train.txt")
  feats = np.concatenate([np.load(out / "new_joint_vecs" / f"{i}.npy") for i in train])
  np.testing.assert_allclose(np.load(out / "Mean.npy"), feats.mean(0), rtol=1e-4, atol=1e-5)


def test_splits_partition_and_hold_out_combos(built):
  out, meta = built
  splits = {s: _ids(out / f"{s}.txt") for s in ("train", "val", "test", "zeroshot")}
  every = sum(splits.values(), [])
  assert sorted(every) == [corpus.clip_id(i) for i in range(N)]
  assert meta["counts"] == {s: len(v) for s, v in splits.items()}
  assert splits["zeroshot"], "the held-out combos are common enough to show up in 16 clips"
  holdout = corpus.parse_holdout(HOLDOUT)
  for split, ids in splits.items():
    for cid in ids:
      segs = json.loads((out / "attributes" / f"{cid}.json").read_text())["segments"]
      held = any((s["action"] == "walk" and s["direction"] == "forward") or s["action"] == "clap"
                 for s in segs)
      assert held == (split == "zeroshot"), (cid, split, segs)
      assert corpus.is_held_out(segs, holdout) == held


def test_hold_out_matches_side_values():
  segs = [{"action": "wave", "side": "left", "count": 2}, {"action": "kick", "side": "left"}]
  assert corpus.is_held_out(segs, corpus.parse_holdout("wave:left"))
  assert not corpus.is_held_out(segs, corpus.parse_holdout("wave:right,kick:right"))
  assert corpus.is_held_out(segs, corpus.parse_holdout("kick"))
  with pytest.raises(ValueError, match="unknown action 'wiggle'"):
    corpus.parse_holdout("wiggle:left")


def test_captions_in_humanml3d_format(built):
  out, _ = built
  for i in range(N):
    lines = (out / "texts" / f"{corpus.clip_id(i)}.txt").read_text().strip().split("\n")
    assert len(lines) >= 3 and len(set(lines)) == len(lines)
    for line in lines:
      caption, tokens, start, end = captions.parse_line(line)
      assert (start, end) == (0.0, 0.0)
      assert caption.endswith(".") and caption == caption.lower()
      words = caption.replace(",", " ").replace(".", " ").split()
      assert len(tokens) == len(words)
      assert all(pos in {"DET", "NOUN", "VERB", "ADV", "ADJ", "ADP", "NUM", "PRON", "CCONJ",
                         "SCONJ", "PART", "INTJ"} for _, pos in tokens)


def test_same_seed_same_bytes_any_process_count(built, tmp_path):
  out, _ = built
  again = tmp_path / "again"
  corpus.build(again, corpus.Config(num_motions=N, seed=7, holdout=corpus.parse_holdout(HOLDOUT),
                                    processes=2))
  files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
  for f in files:
    assert (out / f).read_bytes() == (again / f).read_bytes(), f
  other = tmp_path / "other"
  corpus.build(other, corpus.Config(num_motions=2, seed=8))
  assert (other / "texts/000000.txt").read_bytes() != (out / "texts/000000.txt").read_bytes()


def test_cli_writes_a_corpus_at_30_fps(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipelines.synthetic", f"--out={tmp_path}", "--num_motions=3",
       "--seed=1", "--fps=30", "--processes=1", "--holdout=wave:left"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  meta = json.loads((tmp_path / "corpus.json").read_text())
  assert meta["fps"] == 30 and meta["holdout"] == ["wave:left"]
  assert (tmp_path / "zeroshot.txt").exists()
  t = np.load(tmp_path / "new_joints" / "000000.npy").shape[0]
  assert 60 <= t <= 294
  bad = subprocess.run(
      [sys.executable, "-m", "data_pipelines.synthetic", f"--out={tmp_path}/x", "--num_motions=1",
       "--holdout=dance:left"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "unknown action 'dance'" in bad.stderr


def test_non_empty_output_needs_overwrite(tmp_path):
  corpus.build(tmp_path, corpus.Config(num_motions=3, seed=1))
  with pytest.raises(FileExistsError, match="not empty"):
    corpus.build(tmp_path, corpus.Config(num_motions=2, seed=1))
  corpus.build(tmp_path, corpus.Config(num_motions=2, seed=1), overwrite=True)
  assert sorted(p.name for p in (tmp_path / "new_joints").iterdir()) == ["000000.npy", "000001.npy"]
  assert _ids(tmp_path / "train.txt") + _ids(tmp_path / "val.txt") + _ids(tmp_path / "test.txt")


def test_features_decode_to_the_written_joints(built):
  out, _ = built
  for i in range(4):
    cid = corpus.clip_id(i)
    joints = np.load(out / "new_joints" / f"{cid}.npy").astype(np.float64)
    f263 = np.load(out / "new_joint_vecs" / f"{cid}.npy").astype(np.float64)
    f272 = np.load(out / "vecs272" / f"{cid}.npy").astype(np.float64)
    # Both representations place frame 0 at the origin facing +Z, as the corpus does.
    j263 = np.asarray(humanml3d.features_to_joints(f263))
    j272 = np.asarray(rep272.to_joints(f272))
    assert j263.shape == j272.shape == (len(joints) - 1, 22, 3)
    np.testing.assert_allclose(j263, joints[:-1], atol=1e-4)
    np.testing.assert_allclose(j272, joints[:-1], atol=1e-4)


def test_killed_build_leaves_no_partial_corpus_and_a_rerun_finishes(tmp_path):
  out = tmp_path / "synth"
  cmd = [sys.executable, "-m", "data_pipelines.synthetic", f"--out={out}", "--num_motions=24", "--seed=3",
         "--processes=1"]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:  # kill -9 once a few clips are written
    if len(list(tmp_path.glob("*synth*/new_joints/*.npy"))) >= 3:  # in the temporary folder (or in place)
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the build finished before it could be killed"
  proc.kill()
  proc.wait()
  assert not out.exists(), "a killed build left a partial corpus where a run would look for it"
  rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert json.loads((out / "corpus.json").read_text())["num_motions"] == 24
  assert len(list((out / "new_joints").iterdir())) == 24
