r"""Motion VAE coverage: reconstruction of synthetic test clips next to real motion, per run.

  python bench/bench_vae_coverage.py --run=workdirs/vae_core --run=workdirs/vae_wide \
      --corpus=data/synthetic_20fps --split=test \
      --motion=../shared/fixtures/humanml3d_012314/new_joints_012314.npy [--motion=real.bvh ...]

Every run (a :tiny VAE workdir; its config.json says how it was trained) reconstructs the same
clips: the whole `--split` of `--corpus` (each clip's first 196 frames, as `evaluate
--split=test`) and each `--motion` file (joints [T,22,3], features, or .bvh, as `evaluate
--motion`). Prints MPJPE, PA-MPJPE and root error (mm) per run and clip set, the ratio real /
synthetic MPJPE, and for real clips the root-relative pose error (each frame's root subtracted)
and the final heading error, which say whether the error is drift or pose.
"""
import pathlib
import sys

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from llamo_jax import tasks  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.eval import motion_metrics  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.evaluate import load_motion_joints  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.synthetic import measure  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training import runs  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

_RUN = flags.DEFINE_multi_string("run", None, "A motion VAE workdir (repeat for side by side).", required=True)
_CORPUS = flags.DEFINE_string("corpus", "data/synthetic_20fps", "A HumanML3D-layout folder (synthetic corpus).")
_SPLIT = flags.DEFINE_string("split", "test", "Split file of --corpus to reconstruct.")
_MOTION = flags.DEFINE_multi_string("motion", [], "Real motion files (.npy joints/features or .bvh).")
_MAX_LEN = flags.DEFINE_integer("max_len", 196, "Frames per clip (the first ones), as evaluate --split.")


def _reconstruct(task, model, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  rep = task.representation
  features = (np.asarray(rep.from_joints(joints), np.float32) - task.mean) / task.std
  if not np.all(np.isfinite(features)):
    raise ValueError("a clip gives non-finite features; check the file (NaN) or its units.")
  t = min(len(features), _MAX_LEN.value)
  t -= t % FRAMES_PER_LATENT
  preds, targets = task.reconstruct_joints(model, features[None, :t], np.array([t]))
  return np.asarray(preds[0]), np.asarray(targets[0])


def _metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
  rel = np.linalg.norm((pred - pred[:, :1]) - (target - target[:, :1]), axis=-1).mean()
  heading = np.degrees(measure.facing(pred) - measure.facing(target))
  return {"mpjpe": motion_metrics.mpjpe_mm(pred, target), "pa_mpjpe": motion_metrics.pa_mpjpe_mm(pred, target),
          "root": motion_metrics.root_error_mm(pred, target), "root_relative": 1000.0 * float(rel),
          "final_heading_deg": float(heading[-1])}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  corpus = pathlib.Path(_CORPUS.value)
  split_file = corpus / f"{_SPLIT.value}.txt"
  if not split_file.is_file():
    raise app.UsageError(f"{split_file} not found: --corpus must be a synthetic corpus folder with a "
                         f"{_SPLIT.value}.txt split.")
  ids = split_file.read_text().split()
  clips = [np.load(corpus / "new_joints" / f"{i}.npy") for i in ids]
  rows = []
  for workdir in _RUN.value:
    config = runs.load_run_config(workdir, "motion_vae")
    task, model, step = tasks.restore_for_eval(config, workdir)
    synthetic = [_metrics(*_reconstruct(task, model, j)) for j in clips if len(j) > FRAMES_PER_LATENT]
    syn = {k: float(np.mean([m[k] for m in synthetic])) for k in ("mpjpe", "pa_mpjpe", "root")}
    print(f"{workdir} (step {step}, corpus {config.data.corpus.get('actions', 'core')}): "
          f"{_CORPUS.value} {_SPLIT.value} ({len(synthetic)} clips): MPJPE {syn['mpjpe']:.1f} "
          f"PA-MPJPE {syn['pa_mpjpe']:.1f} root {syn['root']:.1f} mm")
    for path in _MOTION.value:
      real = _metrics(*_reconstruct(task, model, load_motion_joints(path, task.representation)))
      print(f"  {path}: MPJPE {real['mpjpe']:.1f} PA-MPJPE {real['pa_mpjpe']:.1f} root {real['root']:.1f} "
            f"root-relative {real['root_relative']:.1f} mm, final heading error "
            f"{real['final_heading_deg']:+.0f} deg; real / synthetic MPJPE {real['mpjpe'] / syn['mpjpe']:.1f}x")
      rows.append((workdir, path, real, syn))
  return 0


if __name__ == "__main__":
  app.run(main)
