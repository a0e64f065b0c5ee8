r"""Synthetic corpus: generation speed (1 and 2 processes) and plausibility of what it writes.

  python bench/bench_synthetic.py [--num_motions=200] [--write=True] [--actions=core|wide]

Prints the figures and replaces the bench_synthetic section of BENCHMARKS.md
(between <!-- bench_synthetic:start --> and <!-- bench_synthetic:end -->); that section
holds the core action set, so `--actions=wide` only prints.
"""
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from llamo_jax.synthetic import corpus  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.synthetic import program  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.motion import skeleton  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

import benchmarks_md  # bench/benchmarks_md.py

_NUM = flags.DEFINE_integer("num_motions", 200, "Clips per timing run.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md (core action set only).")
_ACTIONS = flags.DEFINE_enum("actions", "core", sorted(program.ACTION_SETS), "The corpus's action set.")

REPO = pathlib.Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "fixtures" / "humanml3d_012314" / "new_joints_012314.npy"


def _timed_build(out, n, processes):
  start = time.perf_counter()
  meta = corpus.build(out, corpus.Config(num_motions=n, seed=0, processes=processes, actions=_ACTIONS.value))
  return time.perf_counter() - start, meta


def _jerk(j, fps):
  return float(np.linalg.norm(np.diff(j, n=3, axis=0) * fps ** 3, axis=-1).mean())


def _skate(j, fps):
  """Fraction of in-contact steps (toe/ankle < 5 cm at both ends) sliding faster than 0.1 m/s."""
  feet = j[:, [7, 8, 10, 11]]
  low = feet[..., 1] < 0.05
  contact = low[1:] & low[:-1]
  speed = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1) * fps
  return (contact & (speed > 0.1)).sum(), contact.sum()


def _plausibility(out, fps):
  parents = np.asarray(skeleton.PARENTS)
  bone_dev, min_y, slides, contacts, jerks, walk_slides, walk_contacts = 0.0, np.inf, 0, 0, [], 0, 0
  for path in sorted((out / "new_joints").glob("*.npy")):
    j = np.load(path).astype(np.float64)
    bones = np.linalg.norm(j[:, 1:] - j[:, parents[1:]], axis=-1)
    bone_dev = max(bone_dev, float(np.abs(bones - bones[0]).max()))
    min_y = min(min_y, float(j[:, [7, 8, 10, 11], 1].min()))
    s, c = _skate(j, fps)
    slides, contacts = slides + s, contacts + c
    jerks.append(_jerk(j, fps))
    segs = json.loads((out / "attributes" / path.name.replace(".npy", ".json")).read_text())["segments"]
    for seg in segs:
      if seg["action"] == "walk":
        s, c = _skate(j[seg["start"]:seg["end"]], fps)
        walk_slides, walk_contacts = walk_slides + s, walk_contacts + c
  return {"max_bone_length_deviation_m": bone_dev, "min_foot_height_m": min_y,
          "sliding_contact_fraction": slides / max(contacts, 1),
          "sliding_contact_fraction_walking": walk_slides / max(walk_contacts, 1),
          "mean_jerk_m_s3": float(np.mean(jerks))}


def main(argv):
  del argv
  n = _NUM.value
  rates = {}
  with tempfile.TemporaryDirectory() as tmp:
    for processes in (1, 2):
      took, meta = _timed_build(pathlib.Path(tmp) / f"p{processes}", n, processes)
      rates[processes] = n / took
      print(f"processes={processes}: {n} clips in {took:.1f} s = {rates[processes]:.1f} clips/s")
    out = pathlib.Path(tmp) / "p2"
    stats = _plausibility(out, 20)
    frames = meta["frames"]["total"]
  real = np.load(REAL) if REAL.exists() else None
  real_jerk = _jerk(real.astype(np.float64), 20) if real is not None else float("nan")
  real_slide = (lambda s: s[0] / max(s[1], 1))(_skate(real, 20)) if real is not None else float("nan")
  for k, v in stats.items():
    print(f"{k}: {v:.4g}")
  print(f"released clip 012314: mean jerk {real_jerk:.4g} m/s^3, sliding contact fraction {real_slide:.3g}")
  eta = 10000 / rates[2]
  print(f"extrapolated --num_motions=10000 with 2 processes: {eta / 60:.1f} min")
  section = f"""## Synthetic corpus (`bench/bench_synthetic.py`)

`python bench/bench_synthetic.py --num_motions={n}` on {platform.machine()} with {os.cpu_count()} CPUs
(seed 0, 20 fps, {frames} frames = {frames / 20 / 60:.1f} min of motion per run; writes joints,
263- and 272-dim features, captions, attributes, stats).

| processes | clips/s |
|---|---|
| 1 | {rates[1]:.1f} |
| 2 | {rates[2]:.1f} |

`--num_motions=10000` with 2 processes: about {eta / 60:.1f} min (extrapolated from {n} clips).

Plausibility of the {n} clips (released clip 012314 for reference):

| measure | synthetic | released clip |
|---|---|---|
| max bone length deviation (m) | {stats['max_bone_length_deviation_m']:.1e} | - |
| min foot joint height (m) | {stats['min_foot_height_m']:.4f} | {real[:, [7, 8, 10, 11], 1].min() if real is not None else float('nan'):.4f} |
| sliding contact fraction (foot < 5 cm, > 0.1 m/s) | {stats['sliding_contact_fraction']:.3f} | {real_slide:.3f} |
| ... while walking | {stats['sliding_contact_fraction_walking']:.3f} | - |
| mean joint jerk (m/s^3) | {stats['mean_jerk_m_s3']:.0f} | {real_jerk:.0f} |
"""
  if _ACTIONS.value != "core":
    print(f"action set {_ACTIONS.value}: BENCHMARKS.md not written (its section holds the core set)")
  elif _WRITE.value:
    benchmarks_md.write_section("bench_synthetic", section)
    print("wrote the bench_synthetic section of BENCHMARKS.md")


if __name__ == "__main__":
  app.run(main)
