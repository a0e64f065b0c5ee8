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
import sys

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from llamo_jax import tasks
from llamo_jax.core import config_files
from llamo_jax.core.errors import InputError
from llamo_jax.eval import motion_metrics
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT
from llamo_jax.motion import files as motion_files
from llamo_jax.motion import stick_figure
from llamo_jax.motion.bvh import retarget


def load_motion_joints(path: pathlib.Path, representation) -> np.ndarray:
  """Joint positions [T,22,3] at the representation's fps from a .npy (joints or its features) or .bvh."""
  array, name, fps = motion_files.load_motion(path)
  if path.suffix.lower() == ".bvh":
    return retarget.resample(array, fps, representation.fps)
  if name == "joints":
    return array
  if name != representation.name:
    raise ValueError(f"--motion={path} holds {name} features; this VAE reads joints [T,22,3] or "
                     f"{representation.name} features [T,{representation.dim}] (denormalised).")
  return np.asarray(representation.to_joints(array))


def evaluate_motion(task, model, path: pathlib.Path, out_dir: pathlib.Path, fmt: str) -> dict:
  """Reconstructs one motion file; writes the side-by-side animation; returns its metrics."""
  rep = task.representation
  joints = load_motion_joints(path, rep)
  features = (np.asarray(rep.from_joints(joints), np.float32) - task.mean) / task.std
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{path} gives non-finite features; check the file (NaN) or its units.")
  t = len(features) - len(features) % FRAMES_PER_LATENT
  preds, targets = task.reconstruct_joints(model, features[None, :t], np.array([t]))
  metrics = motion_metrics.reconstruction_metrics(preds[0], targets[0], rep.fps)
  rendered = out_dir / f"recon_{path.stem}.{fmt}"
  if fmt == "png":
    image = stick_figure.stacked_frames_image([targets[0], preds[0]], ["input", "reconstruction"])
    stick_figure.save_image(image, rendered)
  else:
    stick_figure.render_grid([targets[0], preds[0]], rendered, captions=["input", "reconstruction"],
                             fps=rep.fps)
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
  workdir = pathlib.Path(f.workdir)
  try:
    task, model, step = tasks.restore_for_eval(f.config, workdir, f.step)
  except (InputError, FileNotFoundError) as e:
    sys.exit(f"evaluate: error: {e}")
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
  app.run(main, flags_parser=config_files.parse_flags_with_config)
