"""The paper's VAE ablation at a chosen scale: continuous z16/z32/z64 vs the FSQ baseline.

  python bench/bench_vae_ablation.py --config=configs/motion_vae.py:tiny --steps=3000 --workdir=/tmp/vae_ablation

Trains each variant with the same data, seed and step budget (in this one run, one after
another), evaluates it on the whole test split (clips up to 196 frames), prints a table of
MPJPE, PA-MPJPE, root error, peak jerk, area under jerk, foot skating and training
throughput, and writes it into the bench_vae_ablation section of BENCHMARKS.md.
"""
import pathlib
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

import benchmarks_md  # bench/benchmarks_md.py
from llamo_jax import tasks
from llamo_jax.training import stages

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base VAE config (configs/motion_vae.py:...).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps per variant.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/vae_ablation", "Parent of the variants' workdirs.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")
flags.mark_flags_as_required(["config"])

VARIANTS = {"continuous z16": {"latent_dim": 16}, "continuous z32": {"latent_dim": 32},
            "continuous z64": {"latent_dim": 64}, "FSQ [8,5,5,5]": {"quantizer": "fsq"}}
COLUMNS = ("mpjpe_mm", "pa_mpjpe_mm", "root_error_mm", "peak_jerk", "auj", "foot_skating")


def main(argv):
  del argv
  base = _CONFIG.value
  base.total_steps = _STEPS.value  # before copying: a staged config (:tiny's curriculum) rescales its stages
  plan = stages.stage_plan(base)
  schedule = ", then ".join(
      f"{s.end - s.start} steps of {s.settings.get('data', {}).get('max_len', base.data.max_len)}-frame crops"
      for s in plan)
  rows, gt = [], None
  for name, overrides in VARIANTS.items():
    config = base.copy_and_resolve_references()
    with config.unlocked():
      config.model.update(overrides)
      config.eval_every = 0
      config.checkpoint_every = _STEPS.value
    workdir = pathlib.Path(_WORKDIR.value) / name.replace(" ", "_").replace("[", "").replace("]", "").replace(",", "")
    start = time.time()
    train_metrics = tasks.train_and_evaluate(config, workdir)
    minutes = (time.time() - start) / 60
    task, model, _ = tasks.restore_for_eval(config, workdir)
    summary, _ = task.evaluate_split(model, "test")
    gt = gt or summary
    rows.append(f"| {name} | " + " | ".join(f"{summary[c]:.4g}" for c in COLUMNS)
                + f" | {train_metrics.get('frames_per_sec', float('nan')):.0f} | {minutes:.1f} |")
    print(rows[-1], flush=True)
  benchmarks_md.publish(
      "bench_vae_ablation", "Motion VAE ablation: latent size and FSQ (bench/bench_vae_ablation.py)",
      f"`python {' '.join(sys.argv)}`: each variant trained {_STEPS.value} steps at batch "
      f"{base.data.batch_size} ({schedule}; width {base.model.width}) on the synthetic corpus "
      f"({base.data.corpus.num_motions} clips, {base.data.representation}), evaluated on the whole test split "
      f"(clips up to 196 frames). Ground truth: peak jerk {gt['peak_jerk_gt']:.4g}, AUJ {gt['auj_gt']:.4g}, "
      f"foot skating {gt['foot_skating_gt']:.3g}. Frames/s: training throughput (valid frames) over the "
      f"last log interval, i.e. of the last stage ({plan[-1].name}).",
      ["variant", "MPJPE mm", "PA-MPJPE mm", "root error mm", "peak jerk", "AUJ", "foot skating", "frames/s",
       "train min"], rows, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
