"""The corpus: many clips written as a HumanML3D-layout folder.

Layout under `out/` (see notes/CONTRACTS.md): new_joints/ID.npy [T, 22, 3],
new_joint_vecs/ID.npy [T-1, 263], vecs272/ID.npy [T-1, 272], texts/ID.txt,
attributes/ID.json, Mean.npy / Std.npy (263, std averaged within HumanML3D's
7 groups), Mean272.npy / Std272.npy, train/val/test.txt (~80/10/10),
zeroshot.txt (clips with a held-out combination), corpus.json.

`Config.actions` picks the action set (program.ACTION_SETS): "core" (the default) writes
the same bytes as before the option existed; any other set is named in corpus.json
("action_set"), so a reader can tell the corpora apart. `Config.layout` likewise picks the
rig's rest layout (rig.LAYOUTS: "target", the default, or "human"; corpus.json "layout").

Clip i draws everything from its own child of np.random.SeedSequence(seed), so
a corpus is the same bytes whatever the number of processes, and statistics
are summed in clip order. Mean/Std come from the train split.
"""
import dataclasses
import json
import multiprocessing
import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from llamo_jax.synthetic import captions
from llamo_jax.synthetic import compose
from llamo_jax.synthetic import program
from llamo_jax.synthetic import rig
from llamo_jax.motion import humanml3d
from llamo_jax.motion import rep272

# The generator's version, in corpus.json and the records built from it (data/prepare.py): bump it
# when the same seed would write other clips or captions.
VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_P = (0.8, 0.1, 0.1)
MIN_SECONDS, MAX_SECONDS = 2.0, 9.8  # HumanML3D: 40..196 frames at 20 fps
SUBDIRS = ("new_joints", "new_joint_vecs", "vecs272", "texts", "attributes")


@dataclasses.dataclass(frozen=True)
class Config:
  num_motions: int
  seed: int = 0
  fps: int = 20
  holdout: tuple[tuple[str, str | None], ...] = ()
  processes: int = 1
  min_captions: int = 3
  max_captions: int = 5
  actions: str = "core"  # program.ACTION_SETS
  layout: str = "target"  # rig.LAYOUTS: the rest layout of the pelvis's and spine3's children


def parse_holdout(spec: str) -> tuple[tuple[str, str | None], ...]:
  """'wave:left,kick:right,spin' -> (('wave', 'left'), ('kick', 'right'), ('spin', None))."""
  out = []
  for item in filter(None, (s.strip() for s in spec.split(","))):
    action, _, value = item.partition(":")
    if action not in program.ALL_ACTIONS:
      raise ValueError(f"--holdout: unknown action {action!r} in {item!r}; "
                       f"actions are {sorted(program.ALL_ACTIONS)}")
    out.append((action, value or None))
  return tuple(out)


def is_held_out(records: list[dict[str, Any]], holdout) -> bool:
  """True when a segment matches a held-out (action, value): value is any of its string attributes."""
  for rec in records:
    values = {str(v) for v in rec.values() if isinstance(v, str)}
    for action, value in holdout:
      if rec["action"] == action and (value is None or value in values):
        return True
  return False


@dataclasses.dataclass
class Generated:
  clip: compose.Clip
  captions: list[str]
  split: str
  feats263: np.ndarray
  feats272: np.ndarray


def generate(index: int, cfg: Config) -> Generated:
  """Clip `index` of the corpus (deterministic in cfg.seed, cfg.fps and index)."""
  motion_ss, text_ss, split_ss = np.random.SeedSequence([cfg.seed, index]).spawn(3)
  fps = cfg.fps
  with rig.rest_layout(cfg.layout):
    segs = program.sample_segments(np.random.default_rng(motion_ss), fps,
                                   int(round(MIN_SECONDS * fps)), int(round(MAX_SECONDS * fps)),
                                   action_set=cfg.actions)
    clip = compose.compose(segs, fps)
  text_rng = np.random.default_rng(text_ss)
  count = int(text_rng.integers(cfg.min_captions, cfg.max_captions + 1))
  caps = captions.describe(clip.segments, text_rng, count)
  if len(caps) < cfg.min_captions:
    raise RuntimeError(f"clip {index}: the grammar gave only {len(caps)} distinct captions")
  if is_held_out(clip.segments, cfg.holdout):
    split = "zeroshot"
  else:
    split = SPLITS[int(np.searchsorted(np.cumsum(SPLIT_P), np.random.default_rng(split_ss).random()))]
  feats263 = np.asarray(humanml3d.joints_to_features(clip.joints.astype(np.float32)), np.float32)
  feats272 = np.asarray(rep272.from_rotations(clip.local_quats, clip.root_pos,
                                              rig.rest_offsets(cfg.layout)), np.float32)
  return Generated(clip=clip, captions=caps, split=split, feats263=feats263, feats272=feats272)


def clip_id(index: int) -> str:
  return f"{index:06d}"


def _write(out: pathlib.Path, index: int, g: Generated, cfg: Config) -> None:
  cid = clip_id(index)
  np.save(out / "new_joints" / f"{cid}.npy", g.clip.joints.astype(np.float32))
  np.save(out / "new_joint_vecs" / f"{cid}.npy", g.feats263)
  np.save(out / "vecs272" / f"{cid}.npy", g.feats272)
  (out / "texts" / f"{cid}.txt").write_text(
      "".join(captions.humanml3d_line(c) + "\n" for c in g.captions))
  record = {"id": cid, "fps": cfg.fps, "num_frames": int(g.clip.joints.shape[0]),
            "split": g.split, "segments": g.clip.segments}
  (out / "attributes" / f"{cid}.json").write_text(json.dumps(record, indent=1, sort_keys=True))


def _work(job: tuple[str, int, Config]) -> tuple[int, str, list[str], np.ndarray, np.ndarray]:
  """Generates and writes one clip; returns what the corpus summary needs."""
  out, index, cfg = job
  g = generate(index, cfg)
  _write(pathlib.Path(out), index, g, cfg)
  f263, f272 = g.feats263.astype(np.float64), g.feats272.astype(np.float64)
  sums = (np.concatenate([f263.sum(0), (f263 ** 2).sum(0)]),
          np.concatenate([f272.sum(0), (f272 ** 2).sum(0)]))
  actions = [s["action"] for s in g.clip.segments]
  return len(f263), g.split, actions, sums[0], sums[1]


def build(out_dir: str | os.PathLike, cfg: Config, overwrite: bool = False) -> dict[str, Any]:
  """Writes the whole corpus; returns the corpus.json contents.

  The corpus is written into a temporary folder beside `out_dir` and moved in at the
  end (corpus.json last), so a killed build leaves no partial corpus in `out_dir` and a
  rerun simply builds it. A non-empty `out_dir` is an error unless `overwrite`, which
  replaces what a corpus writes there (so no clip of an older, larger corpus lingers).
  """
  if cfg.num_motions < 1:
    raise ValueError(f"num_motions must be >= 1, got {cfg.num_motions}")
  if cfg.actions not in program.ACTION_SETS:
    raise ValueError(f"unknown action set {cfg.actions!r}; choose one of {sorted(program.ACTION_SETS)}")
  rig.rest_offsets(cfg.layout)  # an unknown layout fails here, before any clip is written
  if cfg.fps not in (20, 30):
    raise ValueError(f"fps must be 20 (HumanML3D) or 30 (272-dim / MotionStreamer), got {cfg.fps}")
  out = pathlib.Path(out_dir)
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise FileExistsError(f"output folder {out} is not empty; choose a new one or overwrite it "
                          "(--overwrite)")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
  try:
    meta = _write_corpus(tmp, cfg)
    out.mkdir(exist_ok=True)
    for sub in SUBDIRS:
      shutil.rmtree(out / sub, ignore_errors=True)
    for name in ("Mean.npy", "Std.npy", "Mean272.npy", "Std272.npy", "corpus.json") + tuple(
        f"{s}.txt" for s in SPLITS + ("zeroshot",)):
      (out / name).unlink(missing_ok=True)
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "corpus.json"):  # the completion mark last
      entry.rename(out / entry.name)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return meta


def _write_corpus(out: pathlib.Path, cfg: Config) -> dict[str, Any]:
  """Writes every file of the corpus into the (empty) folder `out`; returns corpus.json's contents."""
  for sub in SUBDIRS:
    (out / sub).mkdir(parents=True, exist_ok=True)
  jobs = [(str(out), i, cfg) for i in range(cfg.num_motions)]
  if cfg.processes > 1:
    ctx = multiprocessing.get_context("spawn")  # jax may be imported: never fork it
    with ctx.Pool(cfg.processes) as pool:
      results = list(pool.imap(_work, jobs, chunksize=16))
  else:
    results = [_work(j) for j in jobs]

  split_ids: dict[str, list[str]] = {s: [] for s in SPLITS + ("zeroshot",)}
  n = 0
  s263, s272 = np.zeros(2 * 263), np.zeros(2 * 272)
  action_counts: dict[str, int] = {}
  frames = []
  for index, (num, split, actions, a263, a272) in enumerate(results):
    split_ids[split].append(clip_id(index))
    frames.append(num + 1)
    for a in actions:
      action_counts[a] = action_counts.get(a, 0) + 1
    if split == "train":
      n += num
      s263 += a263
      s272 += a272
  if n == 0:
    raise ValueError("no clip landed in the train split; generate more motions "
                     f"(num_motions={cfg.num_motions}) or hold out fewer combinations")
  for name, sums, mean_file, std_file, group in (
      ("263", s263, "Mean.npy", "Std.npy", True), ("272", s272, "Mean272.npy", "Std272.npy", False)):
    d = len(sums) // 2
    mean = sums[:d] / n
    std = np.sqrt(np.maximum(sums[d:] / n - mean ** 2, 0.0))
    if group:
      std = humanml3d.group_std(std)
    # A feature constant over the corpus would divide by zero when normalised.
    std = np.maximum(std, 1e-4)
    np.save(out / mean_file, mean.astype(np.float32))
    np.save(out / std_file, std.astype(np.float32))
  for split, ids in split_ids.items():
    if split != "zeroshot" or cfg.holdout:
      (out / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
  meta = {
      "version": VERSION, "generator": "data_pipelines.synthetic", "fps": cfg.fps,
      "seed": cfg.seed, "num_motions": cfg.num_motions,
      "holdout": [f"{a}:{v}" if v else a for a, v in cfg.holdout],
      "counts": {k: len(v) for k, v in split_ids.items()},
      "frames": {"min": int(min(frames)), "max": int(max(frames)), "total": int(sum(frames))},
      "actions": dict(sorted(action_counts.items())),
      "stats_split": "train",
      "representations": {"hml263": {"dir": "new_joint_vecs", "dim": 263, "mean": "Mean.npy",
                                     "std": "Std.npy"},
                          "mm272": {"dir": "vecs272", "dim": 272, "mean": "Mean272.npy",
                                    "std": "Std272.npy"}},
  }
  if cfg.actions != "core":  # core corpora keep the bytes they had before action sets existed
    meta["action_set"] = cfg.actions
  if cfg.layout != "target":
    meta["layout"] = cfg.layout
  (out / "corpus.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
  return meta
