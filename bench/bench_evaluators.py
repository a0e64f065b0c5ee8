r"""Text-motion evaluators: training wall time and held-out R-precision of real motions.

  python bench/bench_evaluators.py [--presets=guo,tmr] [--rep=hml263] [--root=workdirs/evaluators] \
      [--steps=0] [--split=test] [--write]

For each preset: trains configs/evaluator.py:PRESET[,rep=REP] in ROOT/PRESET_REP with
`python -m llamo_jax.train` (resuming a finished or interrupted run there; --steps > 0 overrides
total_steps), times it, then loads it with tasks.evaluator.load_evaluator and measures
R-precision top-1/2/3 of the split's real motions (whole clips) against their captions, 20
repeats of one caption draw per clip and shuffled batches of 32 (mean ± 1.96 std/sqrt(20)).
The Done-when of the evaluators: top-3 >= 0.80 on the synthetic test split in < 20 CPU minutes.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

from absl import app
from absl import flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llamo_jax.tasks import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top  (after sys.path)
from llamo_jax.training import runs  # pylint: disable=g-import-not-at-top  (after sys.path)

import benchmarks_md  # bench/benchmarks_md.py  # pylint: disable=g-import-not-at-top

_PRESETS = flags.DEFINE_list("presets", ["guo", "tmr"], "configs/evaluator.py presets.")
_REP = flags.DEFINE_enum("rep", "hml263", ["hml263", "mm272"], "Motion representation.")
_ROOT = flags.DEFINE_string("root", "workdirs/evaluators", "Where the runs live (ROOT/PRESET_REP).")
_STEPS = flags.DEFINE_integer("steps", 0, "Override total_steps (0: the config's).")
_SPLIT = flags.DEFINE_string("split", "test", "Records split to measure.")
_TRAIN = flags.DEFINE_bool("train", True, "Train (or resume) before measuring.")
_WRITE = flags.DEFINE_bool("write", False, "Write the section into BENCHMARKS.md.")


def main(argv):
  del argv
  rows, results = [], {}
  for preset in _PRESETS.value:
    workdir = pathlib.Path(_ROOT.value) / f"{preset}_{_REP.value}"
    seconds = None
    if _TRAIN.value:
      cmd = [sys.executable, "-m", "llamo_jax.train", f"--config=configs/evaluator.py:{preset},rep={_REP.value}",
             f"--workdir={workdir}"] + ([f"--config.total_steps={_STEPS.value}"] if _STEPS.value else [])
      start = time.time()
      subprocess.run(cmd, cwd=REPO, check=True)
      seconds = time.time() - start
    config = runs.load_run_config(workdir, task="evaluator")
    evaluator = evaluator_lib.load_evaluator(workdir)
    result = evaluator_lib.split_r_precision(evaluator, str(REPO / config.data.path), _SPLIT.value, repeats=20)
    result["train_seconds"] = seconds
    results[preset] = result
    fmt = lambda k: f"{result[k]['mean']:.3f} ± {result[k]['ci95']:.3f}"
    result["step"] = evaluator.step
    rows.append(f"| {preset} | {_REP.value} | {evaluator.step} of {config.total_steps} | "
                f"{'-' if seconds is None else f'{seconds / 60:.1f}'} | {fmt('top1')} | {fmt('top2')} | "
                f"{fmt('top3')} | {result['clips']} |")
  print(json.dumps(results, indent=1))
  benchmarks_md.publish(
      "bench_evaluators", "Text-motion evaluators: training time and held-out R-precision",
      f"`python bench/bench_evaluators.py --presets={','.join(_PRESETS.value)} --rep={_REP.value}`: real "
      f"motions of the synthetic {_SPLIT.value} split (whole clips) against their own captions, 20 repeats.",
      ["preset", "rep", "steps", "train min (wall)", "top-1", "top-2", "top-3", "clips"], rows, write=_WRITE.value)


if __name__ == "__main__":
  app.run(main)
