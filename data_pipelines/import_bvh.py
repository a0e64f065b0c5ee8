r"""Turns a folder of BVH files (any rig) into a HumanML3D-layout dataset folder.

  python -m data_pipelines.import_bvh --input=FILE_OR_DIR --out=DIR [--fps=20]
      [--mapping=JSON] [--representation=hml263|mm272|hml263,mm272]
      [--unit=auto|m|cm|mm|inch|NUMBER] [--up=y|z] [--split=0.8,0.1,0.1] [--seed=0]

Every `*.bvh` under --input (recursively) becomes one clip with id = its path
relative to --input, without suffix, '/' replaced by '_'. Per clip:
  BVH -> our 22 joints in metres, Y-up, at --fps (llamo_jax/motion/bvh/retarget.py:
  name mapping, unit, up axis, linear resampling)
  -> hml263: new_joint_vecs/ID.npy = humanml3d.joints_to_features [T-1, 263]
     (HumanML3D's processing), new_joints/ID.npy = features_to_joints of those
     features [T-1, 22, 3] (as the released dataset stores them);
  -> mm272: vecs272/ID.npy = the 272-dim features (via inverse kinematics).
  texts/ID.txt from a same-named .txt next to the .bvh: one caption per
  non-empty line, written as `caption#word/OTHER ...#0.0#0.0` (HumanML3D
  format; no POS tagger is run, so every token is tagged OTHER, a tag the T2M
  evaluators know; 0.0#0.0 = the whole clip). Clips without a caption file are
  kept (motion-only training) and listed in the report.
Then Mean.npy/Std.npy (263; std averaged within HumanML3D's 7 feature groups)
and Mean272.npy/Std272.npy from the train split, train/val/test.txt (a
seeded shuffle cut by --split), corpus.json (meta) and import_report.json:
every file converted, failed (with the reason) or without captions. Nothing
is skipped silently; the tool exits with an error when no file converts.

Clip length is not cut to HumanML3D's 40..196 frames; lengths are in the
report.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app
from absl import flags
from absl import logging

from llamo_jax.motion import humanml3d
from llamo_jax.motion import representation as representation_lib
from llamo_jax.motion.bvh import retarget

VERSION = 1


def caption_line(caption: str) -> str:
  """One HumanML3D texts line for a whole-clip caption (tokens tagged OTHER)."""
  caption = " ".join(caption.replace("#", " ").split())
  tokens = " ".join(f"{w}/OTHER" for w in re.findall(r"[a-z0-9']+", caption.lower()))
  return f"{caption}#{tokens}#0.0#0.0"


def find_bvh_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """{clip id: path} of the .bvh files at/under `root`."""
  if root.is_file():
    if root.suffix.lower() != ".bvh":
      raise ValueError(f"--input={root} is a file but not a .bvh.")
    return {root.stem: root}
  if not root.is_dir():
    raise FileNotFoundError(f"--input={root} does not exist.")
  files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".bvh")
  out: dict[str, pathlib.Path] = {}
  for p in files:
    clip = str(p.relative_to(root).with_suffix("")).replace("/", "_").replace("\\", "_")
    if clip in out:
      raise ValueError(f"{p} and {out[clip]} both give clip id {clip!r}; rename one.")
    out[clip] = p
  if not out:
    raise FileNotFoundError(f"no .bvh files under --input={root}.")
  return out


def split_ids(ids: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
  """Seeded shuffle cut into train/val/test; train gets at least one clip."""
  if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
    raise ValueError(f"--split needs 3 non-negative fractions, got {list(fractions)}.")
  frac = np.asarray(fractions, float) / np.sum(fractions)
  order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
  n_train = min(len(ids), max(1, int(round(frac[0] * len(ids)))))
  n_val = min(len(ids) - n_train, int(round(frac[1] * len(ids))))
  return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
          "test": sorted(order[n_train + n_val:])}


def convert_file(path: pathlib.Path, *, fps: float, mapping: Any, unit: Any, up: str,
                 representations: Sequence[str]) -> dict[str, np.ndarray]:
  """One BVH -> {"joints": [T-1,22,3], "hml263": [T-1,263], "mm272": [T-1,272]} (as asked)."""
  joints, _ = retarget.load_joints(path, mapping=mapping, unit=unit, up=up, fps=fps)
  if len(joints) < 3:
    raise ValueError(f"only {len(joints)} frames at {fps:g} fps; features need at least 3.")
  feats = np.asarray(humanml3d.joints_to_features(joints), np.float32)
  out = {"joints": np.asarray(humanml3d.features_to_joints(feats), np.float32)}
  if "hml263" in representations:
    out["hml263"] = feats
  if "mm272" in representations:
    out["mm272"] = np.asarray(representation_lib.get_representation("mm272").from_joints(joints),
                              np.float32)
  for k, v in out.items():
    if not np.all(np.isfinite(v)):
      raise ValueError(f"{k} features contain NaN or inf (degenerate pose?).")
  return out


def _stats(arrays: list[np.ndarray], grouped: bool) -> tuple[np.ndarray, np.ndarray]:
  data = np.concatenate(arrays, axis=0).astype(np.float64)
  mean, std = data.mean(0), data.std(0)
  if grouped:
    std = humanml3d.group_std(std)
  # A feature constant over the data would divide by zero when normalised.
  return mean.astype(np.float32), np.maximum(std, 1e-4).astype(np.float32)


def import_folder(input_path, out_dir, *, fps: float = 20.0, mapping=None,
                  representations: Sequence[str] = ("hml263",), unit="auto", up: str = "y",
                  split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, Any]:
  """Converts the BVH files at `input_path` into `out_dir`; returns the report dict."""
  representations = tuple(representations)
  unknown = [r for r in representations if r not in representation_lib.NAMES]
  if unknown or not representations:
    raise ValueError(f"unknown representation(s) {unknown}; choose from "
                     f"{list(representation_lib.NAMES)}.")
  if not fps > 0:
    raise ValueError(f"--fps must be > 0, got {fps}.")
  mapping = retarget.load_mapping(mapping)  # a bad mapping file fails once, up front
  files = find_bvh_files(pathlib.Path(input_path))
  out = pathlib.Path(out_dir)
  reps = {r: representation_lib.get_representation(r) for r in representations}
  subdirs = ["new_joints", "texts"] + [reps[r].feature_dir for r in representations]
  for sub in subdirs:
    (out / sub).mkdir(parents=True, exist_ok=True)

  converted, failed, uncaptioned = {}, {}, []
  features: dict[str, dict[str, np.ndarray]] = {r: {} for r in representations}
  for clip, path in files.items():
    try:
      result = convert_file(path, fps=fps, mapping=mapping or None, unit=unit, up=up,
                            representations=representations)
    except (ValueError, OSError) as e:  # BvhParseError/BvhMappingError are ValueErrors
      failed[str(path)] = f"{type(e).__name__}: {e}"
      logging.warning("import_bvh: %s failed: %s", path, e)
      continue
    np.save(out / "new_joints" / f"{clip}.npy", result["joints"])
    for r in representations:
      np.save(out / reps[r].feature_dir / f"{clip}.npy", result[r])
      features[r][clip] = result[r]
    text = path.with_suffix(".txt")
    captions = []
    if text.is_file():
      captions = [line.strip() for line in text.read_text().splitlines() if line.strip()]
    if captions:
      (out / "texts" / f"{clip}.txt").write_text("".join(caption_line(c) + "\n" for c in captions))
    else:
      uncaptioned.append(str(path))
    converted[clip] = {"file": str(path), "frames": int(len(result["joints"])),
                       "captions": len(captions)}

  report = {"converted": converted, "failed": failed, "without_captions": uncaptioned,
            "fps": fps, "representations": list(representations)}
  (out / "import_report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
  if not converted:
    raise ValueError(f"none of the {len(files)} BVH files converted; reasons in "
                     f"{out / 'import_report.json'}:\n" +
                     "\n".join(f"  {f}: {r}" for f, r in failed.items()))

  splits = split_ids(sorted(converted), split, seed)
  for name, ids in splits.items():
    (out / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
  meta_reps = {}
  for r in representations:
    sub, mean_file, std_file = reps[r].feature_dir, reps[r].mean_file, reps[r].std_file
    mean, std = _stats([features[r][c] for c in splits["train"]], grouped=(r == "hml263"))
    np.save(out / mean_file, mean)
    np.save(out / std_file, std)
    meta_reps[r] = {"dir": sub, "dim": int(mean.shape[0]), "mean": mean_file, "std": std_file}
  meta = {"version": VERSION, "generator": "data_pipelines.import_bvh", "fps": fps,
          "counts": {k: len(v) for k, v in splits.items()}, "failed": len(failed),
          "stats_split": "train", "representations": meta_reps}
  (out / "corpus.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
  return report


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share names)."""
  flags.DEFINE_string("input", None, "A .bvh file or a folder of them.", required=True)
  flags.DEFINE_string("out", None, "Output dataset folder.", required=True)
  flags.DEFINE_float("fps", 20.0, "Output frame rate (HumanML3D: 20, 272-dim: 30).")
  flags.DEFINE_string("mapping", None, "JSON file {our joint name: rig joint name}.")
  flags.DEFINE_list("representation", ["hml263"], "Feature sets to write: hml263 and/or mm272.")
  flags.DEFINE_string("unit", "auto", "BVH unit: auto|m|cm|mm|inch or metres per unit.")
  flags.DEFINE_enum("up", "y", ["y", "z"], "The files' up axis.")
  flags.DEFINE_list("split", ["0.8", "0.1", "0.1"], "train,val,test fractions.")
  flags.DEFINE_integer("seed", 0, "Seed of the split shuffle.")


def main(argv):
  del argv
  f = flags.FLAGS
  try:
    split = [float(x) for x in f.split]
  except ValueError:
    sys.exit(f"import_bvh: error: --split={','.join(f.split)} must be 3 numbers.")
  try:
    report = import_folder(f.input, f.out, fps=f.fps, mapping=f.mapping,
                           representations=f.representation, unit=f.unit, up=f.up,
                           split=split, seed=f.seed)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"import_bvh: error: {e}")
  print(f"Converted {len(report['converted'])} BVH file(s) into {f.out}; "
        f"{len(report['failed'])} failed, {len(report['without_captions'])} without captions "
        f"(details in {pathlib.Path(f.out) / 'import_report.json'}).")
  for f, reason in report["failed"].items():
    print(f"  FAILED {f}: {reason}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
