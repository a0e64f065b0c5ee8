"""Readers of motion corpora on disk: HumanML3D-layout and Motion-X-style folders.

Both readers yield `Clip`s (one per training example) and count everything they
do not yield in a `SkipReport`, with a reason, so nothing is dropped silently.

HumanML3D layout (the released corpus or `python -m data_pipelines.synthetic`):
  new_joint_vecs/ID.npy  [T, 263]   features of representation "hml263"
  vecs272/ID.npy         [T, 272]   features of representation "mm272" (optional)
  new_joints/ID.npy      [T', 22, 3] joint positions, T' >= T (T+1: the features are frame
                         deltas; the released files are often cut to T)
  texts/ID.txt           lines `caption#word/POS ...#start#end` (seconds; 0#0 = whole clip)
  attributes/ID.json     optional, copied into the record as a JSON string
  Mean.npy, Std.npy      263-dim statistics; Mean272.npy, Std272.npy for "mm272"
  train.txt, val.txt, test.txt (+ zeroshot.txt)  one ID per line
  corpus.json            optional; its "fps" sets the frame rate (default 20)
As in HumanML3D's own loader, a caption line with a nonzero `start#end` span
describes a sub-clip: it becomes its own example, frames [start*fps, end*fps)
(captions with the same span share one sub-clip example). Lines with span 0#0
are the whole clip's captions.

Motion-X-style layout (features already converted to "hml263" or "mm272"):
  motion/ID.npy          [T, C]     features of the chosen representation
  texts/ID.txt           one caption per line (plain text; HumanML3D `#` lines
                         are accepted too and their spans honoured)
  joints/ID.npy          optional [T' >= T, 22, 3]; when absent the record holds [0, 22, 3]
  attributes/ID.json     optional
  Mean.npy, Std.npy      optional statistics (else computed from the train split)
  train.txt, val.txt, test.txt  optional; without them every ID in motion/ is "train"
The frame rate is the representation's (hml263 20 fps, mm272 30 fps) unless given.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Any, Iterator

import numpy as np
from etils import epath

from llamo_jax.core import paths

from llamo_jax.motion import representation as representation_lib
from llamo_jax.motion.skeleton import NUM_JOINTS

SPLIT_NAMES = ("train", "val", "test", "zeroshot")

# Why an example was not written. Every skipped example is counted under one of these.
SKIP_REASONS = (
    "missing_motion",      # the split lists an ID whose feature file does not exist
    "unreadable_file",     # the feature/joint file exists but np.load fails (corrupt, not .npy)
    "wrong_feature_dim",   # features are not [T, C] with the representation's C
    "non_finite",          # NaN or inf in the features or joints
    "bad_joints",          # joints are not [>=T, 22, 3]
    "missing_text",        # no texts/ID.txt
    "unreadable_text",     # texts/ID.txt is not UTF-8 text (or cannot be read)
    "empty_caption",       # the text file has no non-empty caption (for this clip or sub-clip)
    "too_short",           # fewer than min_len frames (whole clip or sub-clip)
)


@dataclasses.dataclass(frozen=True)
class Clip:
  """One example: a clip or a captioned sub-clip of a source motion.

  features: float32 [T, C]; joints: float32 [T or T+1, 22, 3] (or [0, 22, 3] when the
  source has none); captions: non-empty strings; attributes: a JSON string ("{}"
  when absent); source_id: the file ID; clip_id: unique within the dataset
  (`ID` or `ID:start-end` in frames for a sub-clip).
  """
  clip_id: str
  source_id: str
  features: np.ndarray
  joints: np.ndarray
  captions: tuple[str, ...]
  attributes: str

  @property
  def length(self) -> int:
    return int(self.features.shape[0])


@dataclasses.dataclass
class SkipReport:
  """Counts of yielded and skipped examples, per split and reason, with the skipped IDs."""
  written: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  skipped: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(collections.Counter))
  skipped_caption_lines: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  details: list = dataclasses.field(default_factory=list)

  def skip(self, split: str, clip_id: str, reason: str, detail: str) -> None:
    assert reason in SKIP_REASONS, reason
    self.skipped[split][reason] += 1
    self.details.append({"split": split, "id": clip_id, "reason": reason, "detail": detail})

  def count(self, split: str, reason: str) -> int:
    return self.skipped[split][reason]

  def to_dict(self) -> dict:
    return {"written": dict(self.written),
            "skipped": {s: dict(c) for s, c in self.skipped.items()},
            "skipped_total": sum(sum(c.values()) for c in self.skipped.values()),
            "skipped_caption_lines": dict(self.skipped_caption_lines),
            "skipped_examples": list(self.details)}


def parse_text_line(line: str) -> tuple[str, float, float] | None:
  """A texts/ID.txt line -> (caption, start_s, end_s); None for a malformed `#` line.

  `caption#tokens#start#end` (HumanML3D) or a plain caption (span 0, 0).
  """
  parts = line.rstrip("\n").split("#")
  if len(parts) == 1:
    return parts[0].strip(), 0.0, 0.0
  if len(parts) != 4:
    return None
  try:
    start, end = float(parts[2] or 0.0), float(parts[3] or 0.0)
  except ValueError:
    return None
  if not (math.isfinite(start) and math.isfinite(end)):
    return None
  return parts[0].strip(), start, end


def _corpus_meta(root: str | epath.Path) -> dict[str, Any] | None:
  """The folder's corpus.json (written by the synthetic generator), or None where it has none."""
  meta = epath.Path(root) / "corpus.json"
  return json.loads(meta.read_text()) if meta.is_file() else None


def synthetic_corpus_version(root: str | epath.Path) -> int | None:
  """The generator version of the synthetic corpus at `root` (its corpus.json; None: not one)."""
  meta = _corpus_meta(root)
  return None if meta is None else int(meta.get("version", 1))


# What a synthetic corpus was drawn with, beyond its version, and the default where corpus.json
# does not say (corpora written before the option existed).
CORPUS_BUILD_DEFAULTS = {"action_set": "core", "layout": "target"}


def synthetic_corpus_build(root: str | epath.Path) -> dict[str, str] | None:
  """{"action_set": .., "layout": ..} of the synthetic corpus at `root` (synthetic/program.py
  ACTION_SETS, synthetic/rig.py LAYOUTS), from its corpus.json; None: not a synthetic corpus."""
  meta = _corpus_meta(root)
  return None if meta is None else {k: str(meta.get(k, v)) for k, v in CORPUS_BUILD_DEFAULTS.items()}


class _FolderSource:
  """Shared reading and validation; subclasses say where files are."""

  source_format = ""
  joints_required = True  # Motion-X-style folders may lack joints.

  def __init__(self, root: str | epath.Path, representation: str, *, min_len: int = 40,
               fps: float | None = None):
    self.root = epath.Path(root)
    if not self.root.is_dir():
      raise FileNotFoundError(f"Motion source folder {self.root} does not exist; pass --source=DIR "
                              f"pointing at a {self.source_format} folder.")
    if representation not in representation_lib.NAMES:
      raise ValueError(f"Unknown representation {representation!r}; choose one of "
                       f"{sorted(representation_lib.NAMES)}.")
    self.representation = representation
    rep = representation_lib.get_representation(representation)
    self.dim, self.mean_file, self.std_file = rep.dim, rep.mean_file, rep.std_file
    self.min_len = int(min_len)
    self.fps = float(fps if fps is not None else self._folder_fps(rep.fps))

  # --------------------------------------------------------------- layout (subclasses)
  def _folder_fps(self, default: int) -> float:
    return default

  def _feature_path(self, sid: str) -> epath.Path:
    raise NotImplementedError

  def _joints_path(self, sid: str) -> epath.Path:
    raise NotImplementedError

  def _all_ids(self) -> list[str]:
    raise NotImplementedError

  # --------------------------------------------------------------- public
  def split_names(self) -> list[str]:
    """Splits with a `SPLIT.txt` file in the folder."""
    return [s for s in SPLIT_NAMES if (self.root / f"{s}.txt").is_file()]

  def split_ids(self, split: str) -> list[str]:
    path = self.root / f"{split}.txt"
    if not path.is_file():
      raise FileNotFoundError(f"No split file {path}; splits here: {self.split_names()}.")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]

  def stats_files(self) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) float32 [C] from the folder's statistics files, or None when absent."""
    mean_path, std_path = self.root / self.mean_file, self.root / self.std_file
    if not (mean_path.is_file() and std_path.is_file()):
      return None
    mean, std = paths.load_npy(mean_path).astype(np.float32), paths.load_npy(std_path).astype(np.float32)
    for name, a in ((mean_path, mean), (std_path, std)):
      if a.shape != (self.dim,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold {self.dim} finite values for {self.representation}, "
                         f"got shape {a.shape}; regenerate the statistics.")
    if np.any(std <= 0):
      raise ValueError(f"{std_path} has non-positive entries; regenerate the statistics.")
    return mean, std

  def iter_split(self, split: str, report: SkipReport) -> Iterator[Clip]:
    """Valid clips of `split` in ID order; every skipped one is counted in `report`."""
    for sid in self.split_ids(split):
      yield from self.read_clips(sid, split, report)

  def read_clips(self, sid: str, split: str, report: SkipReport) -> Iterator[Clip]:
    """The examples of one source ID: the whole clip and its captioned sub-clips."""
    feature_path = self._feature_path(sid)
    if not feature_path.is_file():
      report.skip(split, sid, "missing_motion", f"{feature_path} does not exist")
      return
    try:
      features = paths.load_npy(feature_path)
    except Exception as e:  # pylint: disable=broad-except  (any failure = unreadable)
      report.skip(split, sid, "unreadable_file", f"{feature_path}: {type(e).__name__}: {e}")
      return
    if features.ndim != 2 or features.shape[1] != self.dim:
      report.skip(split, sid, "wrong_feature_dim",
                  f"{feature_path} has shape {features.shape}, expected [T, {self.dim}]")
      return
    features = features.astype(np.float32)
    if not np.all(np.isfinite(features)):
      report.skip(split, sid, "non_finite", f"{feature_path} holds NaN/inf")
      return
    joints = self._read_joints(sid, features.shape[0], split, report)
    if joints is None:
      return
    text_path = self.root / "texts" / f"{sid}.txt"
    if not text_path.is_file():
      report.skip(split, sid, "missing_text", f"{text_path} does not exist")
      return
    try:
      text = text_path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
      report.skip(split, sid, "unreadable_text", f"{text_path}: {type(e).__name__}: {str(e)[:200]}")
      return
    spans: dict[tuple[float, float], list[str]] = collections.defaultdict(list)
    for line in text.splitlines():
      if not line.strip():
        continue
      parsed = parse_text_line(line)
      if parsed is None:
        report.skipped_caption_lines["malformed_line"] += 1
        continue
      caption, start, end = parsed
      if not caption:
        report.skipped_caption_lines["empty_caption"] += 1
        continue
      spans[(start, end)].append(caption)
    if not spans:
      report.skip(split, sid, "empty_caption", f"{text_path} has no non-empty caption")
      return
    attributes = self._read_attributes(sid)
    for (start, end), captions in spans.items():
      if (start, end) == (0.0, 0.0):
        clip_id, lo, hi = sid, 0, features.shape[0]
      else:
        lo = max(0, int(start * self.fps))
        hi = min(features.shape[0], int(end * self.fps))
        clip_id = f"{sid}:{lo}-{hi}"
      if hi - lo < self.min_len:
        report.skip(split, clip_id, "too_short", f"{max(hi - lo, 0)} frames < min_len {self.min_len}")
        continue
      clip_joints = joints[lo:hi + 1] if joints.shape[0] else joints
      report.written[split] += 1
      yield Clip(clip_id=clip_id, source_id=sid, features=features[lo:hi], joints=clip_joints,
                 captions=tuple(captions), attributes=attributes)

  # --------------------------------------------------------------- helpers
  def _read_joints(self, sid: str, num_frames: int, split: str, report: SkipReport
                   ) -> np.ndarray | None:
    path = self._joints_path(sid)
    if not path.is_file():
      if self.joints_required:
        report.skip(split, sid, "bad_joints", f"{path} does not exist")
        return None
      return np.zeros((0, NUM_JOINTS, 3), np.float32)
    try:
      joints = paths.load_npy(path)
    except Exception as e:  # pylint: disable=broad-except
      report.skip(split, sid, "unreadable_file", f"{path}: {type(e).__name__}: {e}")
      return None
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < num_frames:
      report.skip(split, sid, "bad_joints",
                  f"{path} has shape {joints.shape}, expected [>= {num_frames}, 22, 3]")
      return None
    if not np.all(np.isfinite(joints)):
      report.skip(split, sid, "non_finite", f"{path} holds NaN/inf")
      return None
    return joints.astype(np.float32)

  def _read_attributes(self, sid: str) -> str:
    path = self.root / "attributes" / f"{sid}.json"
    if not path.is_file():
      return "{}"
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True)


class HumanML3DSource(_FolderSource):
  """A HumanML3D-layout folder (real or synthetic); see the module docstring."""

  source_format = "humanml3d"

  def __init__(self, root: str | epath.Path, representation: str = "hml263", *,
               min_len: int = 40, fps: float | None = None, features_only: bool = False):
    """features_only: read features and texts alone (no joints; split files optional), as
    evaluation does for another system's outputs."""
    super().__init__(root, representation, min_len=min_len, fps=fps)
    rep = representation_lib.get_representation(representation)
    self.feature_dir = self.root / rep.feature_dir
    self.features_only = features_only
    if not self.feature_dir.is_dir():
      raise FileNotFoundError(f"{self.feature_dir} does not exist: this folder has no "
                              f"{representation} features; pick another --representation or "
                              "regenerate the corpus.")
    if not self.split_names() and not features_only:
      raise FileNotFoundError(f"No split files ({', '.join(s + '.txt' for s in SPLIT_NAMES)}) in "
                              f"{self.root}; a HumanML3D-layout folder lists its IDs per split.")

  def _folder_fps(self, default: int) -> float:
    # HumanML3D-layout folders hold every representation at the folder's own rate.
    meta = _corpus_meta(self.root)
    return 20.0 if meta is None else float(meta.get("fps", 20))

  def _feature_path(self, sid: str) -> epath.Path:
    return self.feature_dir / f"{sid}.npy"

  def _joints_path(self, sid: str) -> epath.Path:
    return self.root / "new_joints" / f"{sid}.npy"

  def _read_joints(self, sid: str, num_frames: int, split: str, report: SkipReport) -> np.ndarray | None:
    if self.features_only:
      return np.zeros((0, NUM_JOINTS, 3), np.float32)
    return super()._read_joints(sid, num_frames, split, report)


class MotionXSource(_FolderSource):
  """A Motion-X-style folder (motion/ID.npy + texts/ID.txt); see the module docstring."""

  source_format = "motionx"
  joints_required = False

  def __init__(self, root: str | epath.Path, representation: str = "hml263", *,
               min_len: int = 40, fps: float | None = None):
    super().__init__(root, representation, min_len=min_len, fps=fps)
    if not (self.root / "motion").is_dir():
      raise FileNotFoundError(f"{self.root / 'motion'} does not exist; a Motion-X-style folder "
                              "holds motion/ID.npy and texts/ID.txt.")
    self.mean_file, self.std_file = "Mean.npy", "Std.npy"

  def split_names(self) -> list[str]:
    names = super().split_names()
    return names or ["train"]

  def split_ids(self, split: str) -> list[str]:
    if not super().split_names():
      if split != "train":
        raise FileNotFoundError(f"{self.root} has no split files, so its only split is 'train'.")
      return self._all_ids()
    return super().split_ids(split)

  def _all_ids(self) -> list[str]:
    return sorted(p.stem for p in (self.root / "motion").glob("*.npy"))

  def _feature_path(self, sid: str) -> epath.Path:
    return self.root / "motion" / f"{sid}.npy"

  def _joints_path(self, sid: str) -> epath.Path:
    return self.root / "joints" / f"{sid}.npy"


SOURCE_FORMATS = {"humanml3d": HumanML3DSource, "motionx": MotionXSource}


def open_source(root: str | epath.Path, source_format: str = "humanml3d",
                representation: str = "hml263", *, min_len: int = 40,
                fps: float | None = None) -> HumanML3DSource | MotionXSource:
  """A reader for `root` in `source_format` ("humanml3d" | "motionx")."""
  if source_format not in SOURCE_FORMATS:
    raise ValueError(f"Unknown source format {source_format!r}; choose one of {sorted(SOURCE_FORMATS)}.")
  return SOURCE_FORMATS[source_format](root, representation, min_len=min_len, fps=fps)
