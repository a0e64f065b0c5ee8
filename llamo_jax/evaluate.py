"""Evaluates a trained model of a training workdir.

  python -m llamo_jax.evaluate --config=configs/motion_vae.py:tiny --workdir=DIR [--split=test]
  python -m llamo_jax.evaluate --config=configs/motion_vae.py:tiny --workdir=DIR --motion=clip.npy|clip.bvh

Split mode writes DIR/eval_{split}_step{N}.json (summary + per-clip metrics) and prints the
summary. Motion mode reconstructs one motion (joints [T,22,3] or features of the config's
representation in .npy, or a .bvh), prints its metrics and writes a side-by-side animation
(input left, reconstruction right; --render_format=gif|mp4) or a filmstrip (input above,
reconstruction below; png) next to the JSON.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags



def load_motion_joints(path: pathlib.Path, representation) -> np.ndarray:
  """Joint positions [T,22,3] at the representation's fps from a .npy or .bvh file."""
  from llamo_jax.motion import bvh  # pylint: disable=g-import-not-at-top
  if not path.is_file():
    raise FileNotFoundError(f"--motion file not found: {path}")
  if path.suffix.lower() == ".bvh":
    joints, fps = bvh.load_joints(path)
    return bvh.resample(joints, fps, representation.fps)
  if path.suffix.lower() != ".npy":
    raise ValueError(f"--motion={path}: use a .npy (joints or features) or .bvh file.")
  array = np.load(path)
  if array.ndim == 3 and array.shape[1:] == (22, 3):
    return array
  if array.ndim == 2 and array.shape[1] == representation.dim:
    return np.asarray(representation.to_joints(array))
  raise ValueError(f"--motion={path} has shape {array.shape}: expected joints [T,22,3] or "
                   f"{representation.name} features [T,{representation.dim}] (denormalised).")


def evaluate_motion(task, model, path: pathlib.Path, out_dir: pathlib.Path, fmt: str) -> dict:
  """Reconstructs one motion file; writes the side-by-side animation; returns its metrics."""
  from llamo_jax.eval import motion_metrics  # pylint: disable=g-import-not-at-top
  from llamo_jax.motion import render  # pylint: disable=g-import-not-at-top
  rep = task.representation
  joints = load_motion_joints(path, rep)
  features = (np.asarray(rep.from_joints(joints), np.float32) - task.mean) / task.std
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{path} gives non-finite features; check the file (NaN) or its units.")
  t = len(features) - len(features) % 4
  preds, targets = task.reconstruct_joints(model, features[None, :t], np.array([t]))
  metrics = motion_metrics.reconstruction_metrics(preds[0], targets[0], rep.fps)
  rendered = out_dir / f"recon_{path.stem}.{fmt}"
  if fmt == "png":
    render.save_image(render.stacked_frames_image([targets[0], preds[0]], ["input", "reconstruction"]), rendered)
  else:
    render.render_grid([targets[0], preds[0]], rendered, captions=["input", "reconstruction"], fps=rep.fps)
  return dict(metrics, motion=str(path), frames=t, rendered=str(rendered))


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share flag names)."""
  config_flags.DEFINE_config_file("config", None, "The training config of the workdir.")
  flags.DEFINE_string("workdir", None, "Training workdir with checkpoints.")
  flags.DEFINE_string("split", "test", "Split to evaluate.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_integer("max_len", 196, "Frames per clip evaluated (longer clips are cropped).")
  flags.DEFINE_integer("max_batches", None, "Stop after this many batches (default: all).")
  flags.DEFINE_string("motion", None, "Reconstruct this one motion file (.npy or .bvh) instead.")
  flags.DEFINE_enum("render_format", "gif", ["gif", "mp4", "png"],
                    "--motion mode: an animation (gif, mp4) or a filmstrip (png).")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  from llamo_jax import trainer  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(f.workdir)
  task, model, step = trainer.restore_for_eval(f.config, workdir, f.step)
  if not hasattr(task, "evaluate_split"):
    raise app.UsageError(f"llamo_jax.evaluate does not support task {f.config.task!r} yet.")
  if f.motion:
    result = evaluate_motion(task, model, pathlib.Path(f.motion), workdir, f.render_format)
    out = workdir / f"eval_motion_{pathlib.Path(f.motion).stem}_step{step}.json"
  else:
    summary, per_clip = task.evaluate_split(model, f.split, max_len=f.max_len,
                                            max_batches=f.max_batches)
    result = {"split": f.split, "step": step, "summary": summary, "clips": per_clip}
    out = workdir / f"eval_{f.split}_step{step}.json"
  out.write_text(json.dumps(result, indent=2))
  shown = result.get("summary", result)
  for key, value in shown.items():
    print(f"{key:>24s}  {value:.4g}" if isinstance(value, float) else f"{key:>24s}  {value}")
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
