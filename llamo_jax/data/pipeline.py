"""Grain input pipelines over motion datasets (see records.py): crop, caption, normalise, pad, batch.

`make_motion_loader(config, split, seed=..., process_index=..., process_count=...)`
returns a checkpointable iterator of per-host batches (numpy; strings as object arrays):
  features      float32 [B, T, C]  normalised with the dataset's stats, zero past `length`
  mask          bool    [B, T]     True on the first `length` frames
  length        int32   [B]        frames in the crop (a multiple of data.crop_multiple)
  crop_start    int32   [B]        first frame of the crop in the record
  dataset_index int32   [B]        which mixture component the example came from
  caption       object  [B]        one caption drawn per example per epoch
  clip_id       object  [B]
with B = data.batch_size // process_count and T = data.max_len.

Config keys read (under `config.data`):
  path            dataset directory written by data_pipelines.build_records; its stats
                  normalise every example (also those of mixture components)
  representation  "hml263" | "mm272"; must match the dataset(s)
  max_len         T: crops longer clips to a random window of at most this many frames
  min_len         lower end of the random window length when random_length (default 40)
  crop_multiple   crop lengths are multiples of this (4 suits a VAE downsampling 4x; default 1)
  random_length   False (default): window = min(length, max_len) rounded down to crop_multiple;
                  True: a uniform multiple of crop_multiple in [min(min_len, that), that]
  batch_size      GLOBAL batch size, split evenly over processes (as in configs/lm.py)
  worker_count    Grain worker processes per host (default 0 = in-process)
  shuffle         shuffle each epoch (default True)
  mixture         optional sequence of {"path": DIR, "weight": w} (or (DIR, w) pairs); when
                  given, examples are drawn from these datasets in proportion to the weights
                  instead of from `path` alone (`path` still provides the statistics)

Determinism and resumption: every random choice (shuffle order, crop, caption) is a
function of (seed, process, epoch, index), so the examples do not depend on
worker_count; which examples share a batch does (with W workers, worker i batches
examples i, i+W, ... of the host's stream), so keep worker_count fixed across a
resumed run. The iterator's position
is saved with orbax through `grain.checkpoint.CheckpointSave(it)` (restore with
`CheckpointRestore(it)`) as the "data_iter" item of a CheckpointManager.

Sharding: each host reads records process_index, process_index + process_count, ...
of each dataset, so one epoch visits every example exactly once across hosts.

Worker processes: Grain's workers are spawned and read absl flags; a program that
does not go through `absl.app.run` must call `absl.flags.FLAGS.mark_as_parsed()`
before iterating a loader with worker_count > 0.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import grain
import jax
import ml_collections
import numpy as np

from llamo_jax.data import records


def load_stats(data_config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) float32 [C] of the dataset at data.path: what the loader normalises with."""
  ds = _open(data_config.path, data_config.representation)
  return ds.mean, ds.std


def _open(path: str, representation: str) -> records.MotionDataset:
  ds = records.open_dataset(path)
  if ds.representation != representation:
    raise ValueError(f"Dataset {path} holds {ds.representation} features but the config asks for "
                     f"data.representation={representation!r}; rebuild it or fix the config.")
  return ds


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """How a record becomes a fixed-length example."""
  max_len: int
  min_len: int = 40
  crop_multiple: int = 1
  random_length: bool = False

  def __post_init__(self):
    if self.crop_multiple < 1 or self.max_len < self.crop_multiple:
      raise ValueError(f"Need 1 <= data.crop_multiple <= data.max_len, got crop_multiple="
                       f"{self.crop_multiple}, max_len={self.max_len}.")
    if self.max_len % self.crop_multiple:
      raise ValueError(f"data.max_len={self.max_len} must be a multiple of data.crop_multiple="
                       f"{self.crop_multiple}.")
    if not 1 <= self.min_len <= self.max_len:
      raise ValueError(f"Need 1 <= data.min_len <= data.max_len, got {self.min_len}, {self.max_len}.")

  def window(self, length: int, rng: np.random.Generator) -> tuple[int, int]:
    """(start, n) of a crop of a `length`-frame clip: 0 <= start, start + n <= length."""
    n = min(length, self.max_len)
    n -= n % self.crop_multiple
    if n == 0:
      raise ValueError(f"A {length}-frame clip is shorter than data.crop_multiple="
                       f"{self.crop_multiple}; rebuild the dataset with a larger --min_len.")
    if self.random_length:
      lo = max(self.crop_multiple, min(self.min_len, n))
      lo += -lo % self.crop_multiple  # round up to a multiple
      n = int(rng.integers(lo // self.crop_multiple, n // self.crop_multiple + 1)) * self.crop_multiple
    start = int(rng.integers(0, length - n + 1))
    return start, n


class _PrepareExample(grain.transforms.RandomMap):
  """A decoded record -> a padded, normalised, randomly cropped and captioned example."""

  def __init__(self, crop: CropSpec, mean: np.ndarray, std: np.ndarray, dataset_index: int):
    self.crop = crop
    self.mean = mean.astype(np.float32)
    self.inv_std = (1.0 / std).astype(np.float32)
    self.dataset_index = dataset_index

  def random_map(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    ex = records.decode(record)
    start, n = self.crop.window(ex["length"], rng)
    features = np.zeros((self.crop.max_len, self.mean.shape[0]), np.float32)
    features[:n] = (ex["features"][start:start + n] - self.mean) * self.inv_std
    captions = ex["captions"]
    return {"features": features,
            "mask": np.arange(self.crop.max_len) < n,
            "length": np.int32(n),
            "crop_start": np.int32(start),
            "dataset_index": np.int32(self.dataset_index),
            "caption": captions[int(rng.integers(len(captions)))],
            "clip_id": ex["clip_id"]}


def strings_as_objects(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Fixed-width string arrays (as batching stacks str) -> object arrays of str."""
  return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in batch.items()}


def _mixture(data: ml_collections.ConfigDict) -> list[tuple[str, float]]:
  mixture = data.get("mixture", None)
  if not mixture:
    return [(data.path, 1.0)]
  out = []
  for item in mixture:
    if isinstance(item, Mapping) or hasattr(item, "keys"):
      unknown = set(item.keys()) - {"path", "weight"}
      if unknown or "path" not in item:
        raise ValueError(f"data.mixture entries are {{'path': DIR, 'weight': w}}; got {dict(item)}.")
      path, weight = item["path"], float(item.get("weight", 1.0))
    else:
      path, weight = item
    if not weight > 0:
      raise ValueError(f"data.mixture weight of {path} must be > 0, got {weight}.")
    out.append((str(path), float(weight)))
  return out


def motion_examples(config: ml_collections.ConfigDict, split: str, *, seed: int,
                    process_index: int = 0, process_count: int = 1,
                    num_epochs: int | None = None) -> grain.MapDataset:
  """This host's prepared (unbatched) examples of `split`, as a Grain MapDataset.

  num_epochs=None repeats forever (training); a finite number stops after that many
  passes over this host's shard.
  """
  data = config.data
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
  crop = CropSpec(max_len=int(data.max_len), min_len=int(data.get("min_len", 40)),
                  crop_multiple=int(data.get("crop_multiple", 1)),
                  random_length=bool(data.get("random_length", False)))
  mean, std = load_stats(data)
  mixture = _mixture(data)
  # Distinct shuffle / crop seeds per host and per mixture component.
  seeds = np.random.SeedSequence([seed, process_index]).generate_state(2 * len(mixture))
  components, weights = [], []
  for i, (path, weight) in enumerate(mixture):
    ds_info = _open(path, data.representation)
    if ds_info.dim != mean.shape[0]:
      raise ValueError(f"Mixture dataset {path} has {ds_info.dim}-dim features, {data.path} has "
                       f"{mean.shape[0]}.")
    source = ds_info.data_source(split)
    if len(source) < process_count:
      raise ValueError(f"Split {split!r} of {path} has {len(source)} examples, fewer than the "
                       f"{process_count} processes reading it.")
    ds = grain.MapDataset.source(source)[process_index::process_count]
    if data.get("shuffle", True):
      ds = ds.shuffle(seed=int(seeds[2 * i]))
    ds = ds.repeat(num_epochs)
    ds = ds.random_map(_PrepareExample(crop, mean, std, i), seed=int(seeds[2 * i + 1]))
    components.append(ds)
    weights.append(weight)
  if len(components) == 1:
    return components[0]
  return grain.MapDataset.mix(components, weights)


def make_motion_loader(config: ml_collections.ConfigDict, split: str, *, seed: int,
                       process_index: int | None = None, process_count: int | None = None,
                       worker_count: int | None = None,
                       num_epochs: int | None = None) -> grain.DatasetIterator:
  """A checkpointable iterator of this host's batches of `split` (see the module docstring).

  process_index/process_count default to jax's; worker_count to data.worker_count (0).
  With num_epochs set, the last batch of the last epoch may be smaller than B.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  data = config.data
  if worker_count is None:
    worker_count = int(data.get("worker_count", 0))
  batch_size = int(data.batch_size)
  if batch_size % process_count:
    raise ValueError(f"data.batch_size={batch_size} (global) is not divisible by the "
                     f"{process_count} processes.")
  ds = motion_examples(config, split, seed=seed, process_index=process_index,
                       process_count=process_count, num_epochs=num_epochs)
  # Batching last before the workers lets Grain hand batches over in shared memory
  # (2-3x the throughput of pickling them); each worker batches its own slice of examples.
  it_ds = ds.to_iter_dataset().batch(batch_size // process_count,
                                     drop_remainder=num_epochs is None)
  if worker_count > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                           per_worker_buffer_size=2))
  return iter(it_ds.map(strings_as_objects))
