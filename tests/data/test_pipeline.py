"""Grain motion pipeline: crops, masks, normalisation, determinism, sharding, mixture, resume."""
import collections
import time

from absl import flags
import grain
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from llamo_jax.core import sharding
from llamo_jax.data import record_builder
from llamo_jax.data import pipeline
from llamo_jax.data import records
from llamo_jax.training import task as task_lib
import motion_folder


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  """Two built datasets: "main" (24 clips, 40..120 frames) and "other" (10 clips)."""
  tmp = tmp_path_factory.mktemp("pipeline")
  motion_folder.make_folder(tmp / "main_src", num_clips=24, seed=0)
  motion_folder.make_folder(tmp / "other_src", num_clips=10, seed=1)
  record_builder.build_records(tmp / "main_src", tmp / "out", name="main")
  record_builder.build_records(tmp / "other_src", tmp / "out", name="other")
  return tmp / "out" / "main", tmp / "out" / "other"


def make_config(path, **overrides):
  data = {"path": str(path), "representation": "hml263", "max_len": 64, "min_len": 40,
          "crop_multiple": 4, "batch_size": 4}
  data.update(overrides)
  return ml_collections.ConfigDict({"data": data})


def by_clip_id(path, split="train"):
  src = records.open_dataset(path).data_source(split)
  return {ex["clip_id"]: ex for ex in (records.decode(src[i]) for i in range(len(src)))}


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batches_crops_masks_normalisation(datasets):
  path, _ = datasets
  ds = records.open_dataset(path)
  clips = by_clip_id(path)
  it = pipeline.make_motion_loader(make_config(path), "train", seed=0, process_index=0,
                                   process_count=1)
  for _ in range(8):
    b = next(it)
    assert b["features"].shape == (4, 64, 263) and b["features"].dtype == np.float32
    assert b["mask"].shape == (4, 64) and b["mask"].dtype == bool
    assert b["caption"].dtype == object and b["clip_id"].dtype == object
    np.testing.assert_array_equal(b["mask"], np.arange(64)[None] < b["length"][:, None])
    for i in range(4):
      clip = clips[b["clip_id"][i]]
      n, start = int(b["length"][i]), int(b["crop_start"][i])
      full = min(clip["length"], 64)
      assert n == full - full % 4 and n % 4 == 0
      assert 0 <= start and start + n <= clip["length"]
      expected = (clip["features"][start:start + n] - ds.mean) / ds.std
      np.testing.assert_allclose(b["features"][i, :n], expected, rtol=1e-5, atol=1e-5)
      assert not b["features"][i, n:].any()
      assert b["caption"][i] in clip["captions"]


def test_random_length_windows(datasets):
  path, _ = datasets
  clips = by_clip_id(path)
  it = pipeline.make_motion_loader(make_config(path, random_length=True, batch_size=8), "train",
                                   seed=0, process_index=0, process_count=1)
  lengths = set()
  for _ in range(10):
    b = next(it)
    for cid, n, start in zip(b["clip_id"], b["length"], b["crop_start"]):
      n, length = int(n), clips[cid]["length"]
      assert n % 4 == 0 and 40 <= n <= min(length, 64) and start + n <= length
      lengths.add(n)
  assert len(lengths) > 3  # lengths really are drawn


def test_deterministic_for_a_seed_and_epochs_differ(datasets):
  path, _ = datasets
  cfg = make_config(path)
  take = lambda seed, k: [next(it) for it in [pipeline.make_motion_loader(
      cfg, "train", seed=seed, process_index=0, process_count=1)] for _ in range(k)]
  a, b, c = take(0, 10), take(0, 10), take(1, 10)
  for x, y in zip(a, b):
    assert_batches_equal(x, y)
  assert any(list(x["clip_id"]) != list(y["clip_id"]) for x, y in zip(a, c))
  # 18 train clips: batches 0-3 hold epoch 1's first 16, batches 5-8 epoch 2's (reshuffled).
  ids = [cid for batch in a for cid in batch["clip_id"]]
  assert sorted(ids[:18]) == sorted(ids[18:36]) and ids[:18] != ids[18:36]


@pytest.mark.parametrize("process_count", [2, 3])
def test_hosts_cover_every_example_once_per_epoch(datasets, process_count):
  path, _ = datasets
  cfg = make_config(path, batch_size=2 * process_count)
  seen = collections.Counter()
  for p in range(process_count):
    it = pipeline.make_motion_loader(cfg, "train", seed=0, process_index=p,
                                     process_count=process_count, num_epochs=1)
    host = [cid for b in it for cid in b["clip_id"]]
    assert len(host) in (18 // process_count, 18 // process_count + 1)
    seen.update(host)
  assert seen == collections.Counter(list(by_clip_id(path)))


def test_mixture_weights(datasets):
  main, other = datasets
  cfg = make_config(main, batch_size=16, mixture=[{"path": str(main), "weight": 3.0},
                                                  {"path": str(other), "weight": 1.0}])
  it = pipeline.make_motion_loader(cfg, "train", seed=0, process_index=0, process_count=1)
  index = np.concatenate([next(it)["dataset_index"] for _ in range(25)])
  assert abs(np.mean(index == 0) - 0.75) < 0.03
  # dataset_index names the dataset the example was really read from (clip IDs overlap).
  clips = [by_clip_id(main), by_clip_id(other)]
  mean, std = pipeline.load_stats(cfg.data)
  b = next(it)
  for i, (cid, k) in enumerate(zip(b["clip_id"], b["dataset_index"])):
    n, start = int(b["length"][i]), int(b["crop_start"][i])
    raw = clips[k][cid]["features"][start:start + n]
    np.testing.assert_allclose(b["features"][i, :n], (raw - mean) / std, rtol=1e-5, atol=1e-5)
  assert set(b["dataset_index"]) == {0, 1}


def _resume_check(path, tmp_path, worker_count):
  cfg = make_config(path)
  make = lambda: pipeline.make_motion_loader(cfg, "train", seed=3, process_index=0, process_count=1,
                                             worker_count=worker_count)
  it = make()
  before = [next(it) for _ in range(4)]
  mgr = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data_iter",))
  mgr.save(4, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
  mgr.wait_until_finished()
  expected = [next(it) for _ in range(4)]
  fresh = make()
  mgr.restore(4, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(fresh)))
  for want in expected:
    assert_batches_equal(next(fresh), want)
  mgr.close()
  for i in (it, fresh):
    if hasattr(i, "close"):
      i.close()
  return before + expected


def _examples(batches):
  return sorted((str(c), int(s), str(t)) for b in batches
                for c, s, t in zip(b["clip_id"], b["crop_start"], b["caption"]))


def test_resume_with_orbax_in_process(datasets, tmp_path):
  _resume_check(datasets[0], tmp_path, worker_count=0)


def test_resume_with_orbax_two_workers_and_same_examples(datasets, tmp_path):
  # Grain's spawned workers read absl flags; pytest never parses them.
  flags.FLAGS.mark_as_parsed()
  start = time.time()
  with_workers = _resume_check(datasets[0], tmp_path / "w2", worker_count=2)
  in_process = _resume_check(datasets[0], tmp_path / "w0", worker_count=0)
  # The same examples (crop, caption) whatever the worker count; only their batching differs.
  assert _examples(with_workers) == _examples(in_process)
  assert [list(b["clip_id"]) for b in with_workers] != [list(b["clip_id"]) for b in in_process]
  print(f"two-worker resume check: {time.time() - start:.1f} s")


def test_global_batch(datasets):
  """A host batch of the motion loader becomes global arrays split over the mesh's batch axes."""
  path, _ = datasets

  class _Batches(task_lib.Task):  # only global_batch is exercised
    make_model = loss = make_loader = None

  mesh = sharding.make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
  it = pipeline.make_motion_loader(make_config(path, batch_size=8), "train", seed=0,
                                   process_index=0, process_count=1)
  batch = next(it)
  out = _Batches(None, None, mesh).global_batch(batch)
  assert set(out) == {"features", "mask", "length", "crop_start", "dataset_index"}
  assert out["features"].shape == (8, 64, 263)
  assert out["features"].sharding == sharding.batch_sharding(mesh)
  np.testing.assert_array_equal(np.asarray(out["features"]), batch["features"])


def test_load_stats_and_errors(datasets):
  path, _ = datasets
  mean, std = pipeline.load_stats(make_config(path).data)
  np.testing.assert_array_equal(mean, records.open_dataset(path).mean)
  with pytest.raises(ValueError, match="data.representation"):
    pipeline.make_motion_loader(make_config(path, representation="mm272"), "train", seed=0,
                                process_index=0, process_count=1)
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.make_motion_loader(make_config(path, batch_size=5), "train", seed=0,
                                process_index=0, process_count=2)
  with pytest.raises(ValueError, match="multiple of data.crop_multiple"):
    pipeline.make_motion_loader(make_config(path, max_len=66), "train", seed=0,
                                process_index=0, process_count=1)
  with pytest.raises(ValueError, match="no split"):
    pipeline.make_motion_loader(make_config(path), "zeroshot", seed=0, process_index=0,
                                process_count=1)
