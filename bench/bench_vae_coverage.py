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

--diagnose also prints, per real clip, the reconstruction error in each feature group against
the input's own distance from the corpus mean (normalised units; an encoder that ignores its
input scores about equal), and the MPJPE with one input block set to the corpus mean: the
rotation block (the decoded joints read only root and ric, so this changes the input alone) and
the root yaw velocity; and the mean elevation (degrees above horizontal) of the bones whose
rest direction the synthetic rig fixes (pelvis -> hips, spine3 -> collars, collars -> shoulders)
in the real clip against the first 20 clips of --split.
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
from llamo_jax.motion import skeleton  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.synthetic import measure  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training import runs  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

_RUN = flags.DEFINE_multi_string("run", None, "A motion VAE workdir (repeat for side by side).", required=True)
_CORPUS = flags.DEFINE_string("corpus", "data/synthetic_20fps", "A HumanML3D-layout folder (synthetic corpus).")
_SPLIT = flags.DEFINE_string("split", "test", "Split file of --corpus to reconstruct.")
_MOTION = flags.DEFINE_multi_string("motion", [], "Real motion files (.npy joints/features or .bvh).")
_DIAGNOSE = flags.DEFINE_bool("diagnose", False, "Per feature group errors and input ablations of real clips.")
_MAX_LEN = flags.DEFINE_integer("max_len", 196, "Frames per clip (the first ones), as evaluate --split.")


# hml263 feature groups (llamo_jax/motion/humanml3d.py layout).
_GROUPS = {"root yaw velocity": slice(0, 1), "root xz velocity": slice(1, 3), "root height": slice(3, 4),
           "ric": slice(4, 67), "rotations": slice(67, 193), "joint velocities": slice(193, 259),
           "foot contacts": slice(259, 263)}


def _normalised(task, joints: np.ndarray) -> np.ndarray:
  features = (np.asarray(task.representation.from_joints(joints), np.float32) - task.mean) / task.std
  if not np.all(np.isfinite(features)):
    raise ValueError("a clip gives non-finite features; check the file (NaN) or its units.")
  t = min(len(features), _MAX_LEN.value)
  return features[:t - t % FRAMES_PER_LATENT]


def _reconstruct(task, model, joints: np.ndarray, blank: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(reconstructed, input) joints; `blank` features are set to the corpus mean at the input only."""
  features = _normalised(task, joints)
  given = features.copy()
  if blank is not None:
    given[:, blank] = 0.0
  t = len(features)
  preds, _ = task.reconstruct_joints(model, given[None], np.array([t]))
  _, targets = task.reconstruct_joints(model, features[None], np.array([t]))
  return np.asarray(preds[0]), np.asarray(targets[0])


_FIXED_BONES = {"pelvis -> left hip": 1, "pelvis -> right hip": 2, "spine3 -> left collar": 13,
                "spine3 -> right collar": 14, "left collar -> shoulder": 16, "right collar -> shoulder": 17}


def _elevation(joints: np.ndarray, child: int) -> float:
  """Mean elevation (degrees above horizontal) of the bone parent(child) -> child over a clip."""
  bone = joints[:, child] - joints[:, skeleton.PARENTS[child]]
  return float(np.degrees(np.arcsin(bone[:, 1] / np.linalg.norm(bone, axis=-1))).mean())


def _diagnose(task, model, joints: np.ndarray, synthetic: list[np.ndarray]) -> None:
  if task.representation.name != "hml263":
    print("  --diagnose reads hml263 feature groups; this run is " + task.representation.name)
    return
  features = _normalised(task, joints)
  recon = task.reconstruct_features(model, [features * task.std + task.mean])[0]
  recon = (recon - task.mean) / task.std
  for name, cols in _GROUPS.items():
    print(f"    {name}: reconstruction |error| {np.abs(recon[:, cols] - features[:, cols]).mean():.2f}, "
          f"input |z| {np.abs(features[:, cols]).mean():.2f} (max {np.abs(features[:, cols]).max():.1f})")
  for name in ("rotations", "root yaw velocity"):
    pred, target = _reconstruct(task, model, joints, _GROUPS[name])
    print(f"    {name} at the corpus mean at the input: MPJPE {motion_metrics.mpjpe_mm(pred, target):.1f} "
          f"PA-MPJPE {motion_metrics.pa_mpjpe_mm(pred, target):.1f} root {motion_metrics.root_error_mm(pred, target):.1f} mm")
  for name, child in _FIXED_BONES.items():
    print(f"    {name} elevation: real {_elevation(joints, child):+.0f} deg, synthetic "
          f"{np.mean([_elevation(c, child) for c in synthetic]):+.0f} deg")


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
  for workdir in _RUN.value:
    config = runs.load_run_config(workdir, "motion_vae")
    task, model, step = tasks.restore_for_eval(config, workdir)
    synthetic = [_metrics(*_reconstruct(task, model, j)) for j in clips if len(j) > FRAMES_PER_LATENT]
    syn = {k: float(np.mean([m[k] for m in synthetic])) for k in ("mpjpe", "pa_mpjpe", "root")}
    print(f"{workdir} (step {step}, corpus {config.data.corpus.get('actions', 'core')}): "
          f"{_CORPUS.value} {_SPLIT.value} ({len(synthetic)} clips): MPJPE {syn['mpjpe']:.1f} "
          f"PA-MPJPE {syn['pa_mpjpe']:.1f} root {syn['root']:.1f} mm")
    for path in _MOTION.value:
      joints = load_motion_joints(path, task.representation)
      real = _metrics(*_reconstruct(task, model, joints))
      print(f"  {path}: MPJPE {real['mpjpe']:.1f} PA-MPJPE {real['pa_mpjpe']:.1f} root {real['root']:.1f} "
            f"root-relative {real['root_relative']:.1f} mm, final heading error "
            f"{real['final_heading_deg']:+.0f} deg; real / synthetic MPJPE {real['mpjpe'] / syn['mpjpe']:.1f}x")
      if _DIAGNOSE.value:
        _diagnose(task, model, joints, clips[:20])


if __name__ == "__main__":
  app.run(main)
