r"""Motion data: record building (clips/s) and Grain pipeline throughput (batches/s per host).

  python bench/bench_pipeline.py [--clips=1000] [--batches=50] [--batch_size=32] [--max_len=196] \
      [--workers=0,2]

Writes a HumanML3D-layout folder of random clips (40..196 frames, 263-dim
features, joints, 3 captions each) to a temporary directory, times
`data_pipelines.build_records` on it, then times `make_motion_loader` (one host,
crop to max_len aligned to 4 frames, normalise, pad, batch) with each worker
count: the first batch (start-up, including spawning workers) separately, then
--batches batches. Prints a markdown table and replaces the bench_pipeline
section of BENCHMARKS.md (between <!-- bench_pipeline:start --> and
<!-- bench_pipeline:end -->).
"""
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import ml_collections  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import numpy as np  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

from llamo_jax.data import record_builder  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

import benchmarks_md  # bench/benchmarks_md.py

_CLIPS = flags.DEFINE_integer("clips", 1000, "Random clips in the generated folder.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed batches per worker count.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size (one host).")
_MAX_LEN = flags.DEFINE_integer("max_len", 196, "Crop / pad length.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "Grain worker counts to time.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")

REPO = pathlib.Path(__file__).resolve().parents[1]
WORDS = ["walks", "jumps", "waves", "turns", "squats", "kicks", "runs", "claps"]


def write_folder(root: pathlib.Path, num_clips: int, seed: int = 0) -> int:
  """A random HumanML3D-layout folder (80/10/10 splits); returns the total frame count."""
  rng = np.random.default_rng(seed)
  for sub in ("new_joint_vecs", "new_joints", "texts"):
    (root / sub).mkdir(parents=True)
  ids = [f"{i:06d}" for i in range(num_clips)]
  frames = 0
  for clip_id in ids:
    t = int(rng.integers(40, 197))
    frames += t
    np.save(root / "new_joint_vecs" / f"{clip_id}.npy", rng.normal(size=(t, 263)).astype(np.float32))
    np.save(root / "new_joints" / f"{clip_id}.npy", rng.normal(size=(t + 1, 22, 3)).astype(np.float32))
    lines = [f"a person {w} slowly#a/DET person/NOUN {w}/VERB slowly/ADV#0.0#0.0"
             for w in rng.choice(WORDS, 3, replace=False)]
    (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n")
  np.save(root / "Mean.npy", np.zeros(263, np.float32))
  np.save(root / "Std.npy", np.ones(263, np.float32))
  n_train, n_val = int(0.8 * num_clips), int(0.1 * num_clips)
  for split, part in (("train", ids[:n_train]), ("val", ids[n_train:n_train + n_val]),
                      ("test", ids[n_train + n_val:])):
    (root / f"{split}.txt").write_text("".join(i + "\n" for i in part))
  return frames


def time_loader(path: pathlib.Path, workers: int) -> tuple[float, float]:
  """(first-batch seconds, batches/s over --batches batches) with `workers` Grain workers."""
  config = ml_collections.ConfigDict({"data": {
      "path": str(path), "representation": "hml263", "max_len": _MAX_LEN.value, "min_len": 40,
      "crop_multiple": 4, "batch_size": _BATCH_SIZE.value}})
  start = time.perf_counter()
  it = pipeline.make_motion_loader(config, "train", seed=0, process_index=0, process_count=1,
                                   worker_count=workers)
  next(it)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  rate = _BATCHES.value / (time.perf_counter() - start)
  if hasattr(it, "close"):
    it.close()
  return first, rate


def main(argv) -> None:
  del argv
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
  try:
    start = time.perf_counter()
    frames = write_folder(tmp / "src", _CLIPS.value)
    gen_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = record_builder.build_records(tmp / "src", tmp / "out", name="bench")
    build_s = time.perf_counter() - start
    written = sum(summary["split_sizes"].values())
    size_mb = sum(p.stat().st_size for p in (tmp / "out" / "bench").glob("*array_record*")) / 2**20
    rows = []
    for workers in (int(w) for w in _WORKERS.value):
      first, rate = time_loader(tmp / "out" / "bench", workers)
      rows.append(f"| {workers} | {first:.2f} | {rate:.1f} | {rate * _BATCH_SIZE.value:.0f} |")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  load = os.getloadavg()
  table = "\n".join([
      "## Motion records and Grain pipeline (bench/bench_pipeline.py)",
      "",
      f"`python bench/bench_pipeline.py --clips={_CLIPS.value} --batches={_BATCHES.value} "
      f"--batch_size={_BATCH_SIZE.value} --max_len={_MAX_LEN.value} "
      f"--workers={','.join(_WORKERS.value)}`: a generated HumanML3D-layout folder of "
      f"{_CLIPS.value} random clips (40..196 frames, {frames} frames in all, 263-dim features, "
      "joints, 3 captions each; writing it took "
      f"{gen_s:.1f} s, not counted).",
      "",
      f"Record building (`data_pipelines.build_records`, all splits, {written} examples, "
      f"{size_mb:.0f} MiB of ArrayRecord): {build_s:.1f} s = **{written / build_s:.0f} clips/s**.",
      "",
      f"Pipeline, one host (`make_motion_loader`: decode, random crop aligned to 4, caption "
      f"sample, normalise, pad to {_MAX_LEN.value}, batch {_BATCH_SIZE.value}); first batch "
      f"(start-up, spawning workers) timed apart from the next {_BATCHES.value}:",
      "",
      "| workers | first batch s | batches/s | examples/s |",
      "|---|---|---|---|",
      *rows,
      "",
      f"Machine: {platform.machine()}, {os.cpu_count()} CPUs; load average at the end "
      f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min; other jobs shared the cores, so absolute "
      "times are noisy). With workers, each worker batches its slice and hands batches over in "
      "shared memory.",
  ])
  print(table)
  if _WRITE.value:
    path = benchmarks_md.write_section("bench_pipeline", table)
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
