"""Motion datasets as TFDS datasets in the ArrayRecord file format.

A dataset directory (written by `python -m data_pipelines.build_records`) holds:
  dataset_info.json, features.json     TFDS metadata (read with tfds.builder_from_directory)
  NAME-SPLIT.array_record-0000i-of-0000n  the records, in source ID order
  mean.npy, std.npy                    float32 [C] normalisation statistics
  motion_meta.json                     representation, dim, fps, source, where the stats came from,
                                       whether the train split holds mirrored clips
  build_report.json                    written / skipped counts per split and reason

Record schema (one example = one clip or captioned sub-clip):
  features    float32 [T, C]       raw (unnormalised) features of the representation
  joints      float32 [T', 22, 3]   joint positions, T' = T+1 (synthetic) or T (released HumanML3D,
                                   whose files are cut to equal length); [0, 22, 3] when absent
  captions    list[str]            >= 1 non-empty captions
  attributes  str                  JSON object ("{}" when absent)
  length      int32                T
  source_id   str                  the source file ID
  clip_id     str                  unique: `ID`, or `ID:start-end` (frames) for a sub-clip
Reading needs neither TensorFlow nor tfds' download machinery: `open_dataset(path)
.data_source(split)` is a random-access source (tfds.data_source over ArrayRecord)
that Grain can shard and shuffle; `decode(record)` turns its bytes into str.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from llamo_jax.core import paths
from llamo_jax.data import sources
from llamo_jax.motion import skeleton

FORMAT_VERSION = "1.0.0"
META_FILE = "motion_meta.json"
REPORT_FILE = "build_report.json"
MEAN_FILE, STD_FILE = "mean.npy", "std.npy"


def features_dict(dim: int) -> tfds.features.FeaturesDict:
  """The TFDS feature spec of a motion record with `dim`-dim features."""
  return tfds.features.FeaturesDict({
      "features": tfds.features.Tensor(shape=(None, dim), dtype=np.float32, encoding="bytes"),
      "joints": tfds.features.Tensor(shape=(None, skeleton.NUM_JOINTS, 3), dtype=np.float32,
                                     encoding="bytes"),
      "captions": tfds.features.Sequence(tfds.features.Text()),
      "attributes": tfds.features.Text(),
      "length": tfds.features.Scalar(dtype=np.int32),
      "source_id": tfds.features.Text(),
      "clip_id": tfds.features.Text(),
  })


def clip_to_example(clip: sources.Clip) -> dict[str, Any]:
  return {"features": clip.features, "joints": clip.joints, "captions": list(clip.captions),
          "attributes": clip.attributes, "length": clip.length, "source_id": clip.source_id,
          "clip_id": clip.clip_id}


class _MotionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes given example streams as splits; the dataset name is chosen at run time."""

  VERSION = tfds.core.Version(FORMAT_VERSION)

  def __init__(self, *, name: str, dim: int, splits: Mapping[str, Iterable[sources.Clip]],
               description: str, **kwargs):
    self.name = name
    self._dim = dim
    self._splits = splits
    self._description = description
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # disable_shuffling keeps records in source ID order: record i = i-th clip yielded.
    return tfds.core.DatasetInfo(builder=self, description=self._description,
                                 features=features_dict(self._dim), disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._examples(clips) for split, clips in self._splits.items()}

  def _examples(self, clips: Iterable[sources.Clip]):
    for clip in clips:
      yield clip.clip_id, clip_to_example(clip)

  def _generate_examples(self, **kwargs):
    raise NotImplementedError  # _split_generators hands over generators directly.


def write_splits(data_dir: str | epath.Path, *, name: str, dim: int,
                 splits: Mapping[str, Iterable[sources.Clip]], description: str = "") -> epath.Path:
  """Writes each split's clips as ArrayRecord shards; returns data_dir/name/VERSION.

  Split iterables are consumed lazily (one clip in memory at a time per split). A remote
  `data_dir` (gs://) is written locally first and uploaded: ArrayRecord's writer needs a
  local file (its reader opens gs:// itself).
  """
  tfds.disable_progress_bar()
  data_dir = epath.Path(data_dir)
  with paths.staged_dir(data_dir) as local:
    builder = _MotionBuilder(name=name, dim=dim, splits=splits,
                             description=description or "Motion clips with captions.",
                             data_dir=str(local), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        verify_ssl=False, try_download_gcs=False))
    relative = epath.Path(builder.data_dir).relative_to(local)
  return data_dir / relative


@dataclasses.dataclass(frozen=True)
class MotionDataset:
  """A built motion dataset: metadata, statistics, and per-split random-access sources."""
  path: epath.Path
  name: str
  representation: str
  dim: int
  fps: float
  mean: np.ndarray  # float32 [C]
  std: np.ndarray   # float32 [C]
  split_sizes: Mapping[str, int]
  mirrored_train: bool = False  # the train split holds the left/right mirror of every clip
  corpus_version: int | None = None  # the synthetic corpus's generator version, if built from one

  def data_source(self, split: str) -> Any:
    """A Grain-compatible random-access source of `split` (records as tfds decodes them)."""
    if split not in self.split_sizes:
      raise ValueError(f"Dataset {self.path} has no split {split!r}; it has {sorted(self.split_sizes)}.")
    if self.split_sizes[split] == 0:
      raise ValueError(f"Split {split!r} of {self.path} is empty (see {REPORT_FILE} for why).")
    return tfds.builder_from_directory(str(self.path)).as_data_source(split)


def open_dataset(path: str | epath.Path) -> MotionDataset:
  """Opens a dataset directory written by data_pipelines.build_records."""
  path = epath.Path(path)
  meta_path = path / META_FILE
  if not meta_path.is_file():
    raise FileNotFoundError(f"{path} is not a motion dataset (no {META_FILE}); build one with "
                            f"`python -m data_pipelines.build_records --source=DIR --out=DIR`.")
  meta = json.loads(meta_path.read_text())
  if meta.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path} has record format {meta.get('format_version')}, this code reads "
                     f"{FORMAT_VERSION}; rebuild it with data_pipelines.build_records.")
  return MotionDataset(
      path=path, name=meta["name"], representation=meta["representation"], dim=int(meta["dim"]),
      fps=float(meta["fps"]), mean=paths.load_npy(path / MEAN_FILE), std=paths.load_npy(path / STD_FILE),
      split_sizes={k: int(v) for k, v in meta["split_sizes"].items()},
      mirrored_train=bool(meta.get("mirrored_train", False)), corpus_version=meta.get("corpus_version"))


def decode(record: Mapping[str, Any]) -> dict[str, Any]:
  """A record as the data source returns it -> numpy arrays and str."""
  text = lambda b: b.decode("utf-8") if isinstance(b, bytes) else str(b)
  return {"features": np.asarray(record["features"], np.float32),
          "joints": np.asarray(record["joints"], np.float32),
          "captions": [text(c) for c in record["captions"]],
          "attributes": text(record["attributes"]),
          "length": int(record["length"]),
          "source_id": text(record["source_id"]),
          "clip_id": text(record["clip_id"])}
