r"""Writes a synthetic motion-text corpus in the HumanML3D layout.

  python -m data_pipelines.synthetic --out=/tmp/synth --num_motions=1000 --seed=0 \
      [--fps=20|30] [--holdout=wave:left,kick:right] [--actions=core|wide] [--layout=target|human] [--processes=2] [--overwrite]
"""
import time

from absl import app
from absl import flags

from llamo_jax.synthetic import corpus
from llamo_jax.synthetic import program
from llamo_jax.synthetic import rig

_OUT = flags.DEFINE_string("out", None, "Output folder (created).", required=True)
_NUM = flags.DEFINE_integer("num_motions", 1000, "Number of clips.")
_SEED = flags.DEFINE_integer("seed", 0, "Corpus seed; same seed, same bytes.")
_FPS = flags.DEFINE_enum("fps", "20", ["20", "30"], "Frame rate (20 = HumanML3D, 30 = 272-dim).")
_HOLDOUT = flags.DEFINE_string(
    "holdout", "", "Comma-separated action[:value] combinations kept out of train/val/test "
    "and written to zeroshot.txt, e.g. wave:left,kick:right,spin.")
_ACTIONS = flags.DEFINE_enum("actions", "core", sorted(program.ACTION_SETS),
                              "Action set: core (the 15 actions; the default) or wide (adds crouch, kneel, "
                              "bend / pick up, stretch and arm gestures).")
_LAYOUT = flags.DEFINE_enum("layout", "target", list(rig.LAYOUTS),
                            "Rest layout of the hips and collars: target (level, HumanML3D's raw "
                            "directions; the default) or human (where the released clips put them).")
_PROCESSES = flags.DEFINE_integer("processes", 2, "Worker processes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the corpus in a non-empty --out.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    holdout = corpus.parse_holdout(_HOLDOUT.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  cfg = corpus.Config(num_motions=_NUM.value, seed=_SEED.value, fps=int(_FPS.value),
                      holdout=holdout, processes=_PROCESSES.value, actions=_ACTIONS.value,
                      layout=_LAYOUT.value)
  start = time.time()
  try:
    meta = corpus.build(_OUT.value, cfg, overwrite=_OVERWRITE.value)
  except FileExistsError as e:
    raise app.UsageError(str(e)) from None
  took = time.time() - start
  print(f"wrote {cfg.num_motions} clips to {_OUT.value} in {took:.1f} s "
        f"({cfg.num_motions / took:.1f} clips/s); splits {meta['counts']}")


if __name__ == "__main__":
  app.run(main)
