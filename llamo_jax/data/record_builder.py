"""Builds a motion dataset (TFDS, ArrayRecord files) from a HumanML3D-layout or Motion-X-style folder.

Writes OUT/NAME/ (NAME defaults to `<source folder>_<representation>`), the layout
described in llamo_jax/data/records.py, and returns the build report: written
examples per split and skipped examples per split and reason (the skipped IDs are
listed in OUT/NAME/build_report.json). Statistics come from the source folder's
Mean/Std files when present, else from the train split (std floored at 1e-4).
The dataset is written to a temporary folder beside OUT/NAME and moved into place
at the end, so a failure leaves nothing half-written; an existing OUT/NAME is only
replaced with overwrite=True. The program: `python -m data_pipelines.build_records`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import time
from typing import Iterable, Iterator, Sequence

import numpy as np
from etils import epath

from llamo_jax.core import paths
from llamo_jax.data import records
from llamo_jax.data import sources
from llamo_jax.motion import mirror

STD_FLOOR = 1e-4


class _RunningStats:
  """Per-dim mean/std over all frames, accumulated in float64."""

  def __init__(self, dim: int):
    self.n, self.total, self.total_sq = 0, np.zeros(dim), np.zeros(dim)

  def wrap(self, clips: Iterable[sources.Clip]) -> Iterator[sources.Clip]:
    for clip in clips:
      # Over examples as training sees them (a sub-clip's frames count again).
      f = clip.features.astype(np.float64)
      self.n += f.shape[0]
      self.total += f.sum(0)
      self.total_sq += np.square(f).sum(0)
      yield clip

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    mean = self.total / self.n
    std = np.sqrt(np.maximum(self.total_sq / self.n - np.square(mean), 0.0))
    return mean.astype(np.float32), np.maximum(std, STD_FLOOR).astype(np.float32)


def _with_mirrors(clips: Iterable[sources.Clip], representation: str, split: str,
                  report: sources.SkipReport) -> Iterator[sources.Clip]:
  """Each clip, then its mirror image (see build_records); the report counts the mirrors as written."""
  for clip in clips:
    yield clip
    if not len(clip.joints):
      raise ValueError(f"mirror=True needs joint positions, and clip {clip.clip_id} has none; build "
                       "without mirroring or add the source's joints (new_joints/).")
    features = mirror.mirror_features(clip.joints, representation)
    if features.shape != clip.features.shape:
      raise ValueError(f"The mirror of clip {clip.clip_id} has features {features.shape}, the clip "
                       f"{clip.features.shape}: its joints and features do not match.")
    report.written[split] += 1
    yield dataclasses.replace(
        clip, clip_id="M" + clip.clip_id, source_id="M" + clip.source_id, features=features,
        joints=mirror.mirror_joints(clip.joints).astype(np.float32),
        captions=tuple(mirror.mirror_text(c) for c in clip.captions),
        attributes=mirror.mirror_attributes(clip.attributes))


def build_records(source_dir: str | epath.Path, out_dir: str | epath.Path, *,
                  source_format: str = "humanml3d", representation: str = "hml263",
                  name: str | None = None, min_len: int = 40, fps: float | None = None,
                  splits: Sequence[str] | None = None, overwrite: bool = False, mirror: bool = False) -> dict:
  """Builds OUT/NAME from a source folder; returns the build report (also saved beside it).

  mirror: also write the left/right mirror image of every train clip (`M` + its id;
  features recomputed from the mirrored joints, "left"/"right" swapped in its captions
  and attributes; llamo_jax/motion/mirror.py), as HumanML3D does. Held-out splits stay as they are.
  """
  start_time = time.time()
  source = sources.open_source(source_dir, source_format, representation, min_len=min_len, fps=fps)
  name = name or f"{source.root.name}_{representation}".lower().replace("-", "_")
  if not name.isidentifier():
    raise ValueError(f"Dataset name {name!r} must be a Python identifier (letters, digits, _); "
                     "pass --name.")
  out_dir = epath.Path(out_dir)
  target = out_dir / name
  if target.exists() and not overwrite:
    raise FileExistsError(f"{target} already exists; pass --overwrite to replace it or choose "
                          "another --name/--out.")
  split_names = list(splits) if splits else source.split_names()
  unknown = sorted(set(split_names) - set(source.split_names()))
  if unknown:
    raise ValueError(f"Splits {unknown} not in {source.root}; it has {source.split_names()}.")

  stats = source.stats_files()
  running = None
  if stats is None:
    if "train" not in split_names:
      raise ValueError(f"{source.root} has no statistics files, and without a train split there "
                       "is nothing to compute them from; add the train split.")
    running = _RunningStats(source.dim)
  report = sources.SkipReport()
  split_iters = {}
  for split in split_names:
    clips = source.iter_split(split, report)
    if mirror and split == "train":
      clips = _with_mirrors(clips, representation, split, report)
    clips = running.wrap(clips) if (running and split == "train") else clips
    # TFDS cannot write an empty split: a split without one valid clip is left out of
    # the records and recorded with size 0 (the report says why its clips were skipped).
    first = next(clips, None)
    if first is not None:
      split_iters[split] = itertools.chain([first], clips)
  if not split_iters:
    raise ValueError(f"No valid clip in any split of {source.root}: "
                     f"{json.dumps(report.to_dict()['skipped'])}.")

  out_dir.mkdir(parents=True, exist_ok=True)
  tmp = paths.temp_sibling(target)
  tmp.mkdir()
  try:
    built = records.write_splits(tmp, name=name, dim=source.dim, splits=split_iters,
                                 description=f"{representation} motion clips from {source.root}")
    if running is not None:
      if running.n == 0:
        raise ValueError(f"The train split of {source.root} has no valid clip to compute "
                         "statistics from (see the skipped examples above).")
      mean, std = running.result()
      stats_note = f"computed over {running.n} train frames (std floored at {STD_FLOOR})"
    else:
      mean, std = stats
      stats_note = f"{source.mean_file}/{source.std_file} of the source folder"
    paths.save_npy(built / records.MEAN_FILE, mean)
    paths.save_npy(built / records.STD_FILE, std)
    summary = report.to_dict()
    meta = {"format_version": records.FORMAT_VERSION, "name": name,
            "representation": representation, "dim": source.dim, "fps": source.fps,
            "source": str(paths.absolute(source.root)), "source_format": source_format,
            "min_len": min_len, "stats": stats_note, "mirrored_train": mirror,
            "corpus_version": sources.synthetic_corpus_version(source.root),
            "split_sizes": {s: summary["written"].get(s, 0) for s in split_names}}
    (built / records.META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    summary = {**meta, **summary, "seconds": round(time.time() - start_time, 3)}
    (built / records.REPORT_FILE).write_text(json.dumps(summary, indent=1, sort_keys=True))
    # Move into place last: only a complete dataset ever appears at `target`.
    old = None
    if target.exists():
      old = tmp / "replaced"
      target.rename(old)
    built.rename(target)
  finally:
    if tmp.exists():
      tmp.rmtree()
  return summary


def format_report(summary: dict) -> str:
  """The human-readable build report."""
  lines = [f"dataset {summary['name']} ({summary['representation']}, {summary['dim']} dims, "
           f"{summary['fps']:g} fps) from {summary['source']}", f"statistics: {summary['stats']}"]
  for split, n in summary["split_sizes"].items():
    skipped = summary["skipped"].get(split, {})
    why = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items())) or "none"
    lines.append(f"  {split:>9}: written {n:6d}  skipped {sum(skipped.values()):5d} ({why})")
  if summary["skipped_caption_lines"]:
    lines.append(f"caption lines skipped: {summary['skipped_caption_lines']}")
  lines.append(f"{summary['skipped_total']} skipped examples in total, listed in "
               f"{records.REPORT_FILE}; {summary['seconds']:.1f} s")
  return "\n".join(lines)
