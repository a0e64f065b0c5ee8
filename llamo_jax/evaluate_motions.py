"""Scores a folder of generated motions against real ones: the T2M protocol with a text-motion evaluator.

  python -m llamo_jax.evaluate_motions --evaluator=E --reference=DIR --generated=DIR [--split=test]
      [--crop=protocol|none] [--num_repeats=20] [--embeddings_out=FILE.npz] --out=metrics.json

Both folders are HumanML3D-layout (features of the evaluator's representation in
new_joint_vecs/ or vecs272/, captions in texts/ID.txt): the reference is a corpus, the
generated folder another system's outputs (or ours), each file captioned with the prompt
it was generated from. The generated folder's IDs are its own SPLIT.txt, or else the
reference's. E is an evaluator: a `configs/evaluator.py` training workdir or a directory
written by `python -m llamo_jax.import_evaluator`. Without --generated, the reference is
scored against itself (the Real-motion row).

metrics.json: {"t2m": {"fid", "r_precision": {"top1", "top2", "top3"}, "mm_dist",
"diversity"} each {"mean", "ci95"}, "physical": {...}, "protocol": {clip counts, skipped
clips with reasons, notes}} (eval/t2m_protocol.py, eval/motion_metrics.py). FILE.npz holds
the generated clips' `ids`, `captions`, `text` and `motion` embeddings (with --crop=none:
each clip's first caption and whole clip). Every path flag may be local or gs:// (any
etils.epath path).
"""
from __future__ import annotations

import json

import numpy as np
from absl import app
from absl import flags
from etils import epath

from llamo_jax.core import paths
from llamo_jax.data import sources
from llamo_jax.eval import motion_metrics
from llamo_jax.eval import t2m_protocol
from llamo_jax.motion import representation as representation_lib
from llamo_jax.tasks import evaluator as evaluator_lib

REFERENCE_MIN_LEN = 40  # frames; the released evaluation drops shorter real clips


def physical(clips: list[t2m_protocol.EvalClip], representation: str, fps: float) -> dict[str, float]:
  """Mean physical metrics (eval/motion_metrics.py) of clips' joints; clips under 4 frames left out."""
  rep = representation_lib.get_representation(representation)
  joints = [np.asarray(rep.to_joints(c.features)) for c in clips if len(c.features) >= 4]
  return motion_metrics.mean_physical_metrics(joints, fps)


def run(evaluator: t2m_protocol.Evaluator, reference: paths.PathLike, generated: paths.PathLike | None, *,
        split: str = "test", crop: str = "protocol", num_repeats: int = 20, seed: int = 0,
        embeddings_out: paths.PathLike | None = None, progress: bool = True) -> dict:
  """metrics.json's content for two folders (module docstring)."""
  rep = evaluator.representation
  skips = t2m_protocol.Skips()
  ref_clips = t2m_protocol.read_folder(reference, rep, split, skips, min_len=REFERENCE_MIN_LEN)
  fps = sources.HumanML3DSource(reference, rep).fps
  gen_clips = None
  if generated:
    gen_root = epath.Path(generated)
    ids = None if (gen_root / f"{split}.txt").is_file() else sources.HumanML3DSource(reference, rep).split_ids(split)
    gen_clips = t2m_protocol.read_folder(gen_root, rep, split, skips, min_len=1, ids=ids)
  t2m = t2m_protocol.evaluate_t2m(evaluator, ref_clips, gen_clips, num_repeats=num_repeats, crop=crop,
                                  seed=seed, skips=skips, progress=progress,
                                  label="generated" if generated else "reference")
  protocol = t2m.pop("protocol")
  scored = gen_clips if gen_clips is not None else ref_clips
  phys = physical(scored, rep, fps)
  if gen_clips is not None:
    phys["reference"] = physical(ref_clips, rep, fps)
  if embeddings_out:
    kept = t2m_protocol.select_clips(scored, evaluator, crop, t2m_protocol.Skips(), "generated")
    path = epath.Path(embeddings_out)
    if not path.name.endswith(".npz"):  # as np.savez names a path it is given
      path = path.with_name(path.name + ".npz")
    with path.open("wb") as fh:
      np.savez(fh, **t2m_protocol.generated_embeddings(evaluator, kept, crop, seed))
  return {"t2m": t2m, "physical": phys, "protocol": protocol,
          "reference": str(reference), "generated": str(generated) if generated else None, "split": split}


def define_flags() -> None:
  """The CLI flags (defined only when run as a program)."""
  flags.DEFINE_string("evaluator", None, "Evaluator: an evaluator training workdir or an imported evaluator dir.")
  flags.DEFINE_string("reference", None, "HumanML3D-layout folder of real motions (features + texts + splits).")
  flags.DEFINE_string("generated", None, "HumanML3D-layout folder of generated motions (default: score the "
                      "reference against itself, the Real-motion row).")
  flags.DEFINE_string("split", "test", "Split whose IDs are evaluated.")
  flags.DEFINE_enum("crop", "protocol", list(t2m_protocol.CROPS),
                    "protocol: the released evaluation's random crops; none: whole clips (<= 196 frames).")
  flags.DEFINE_integer("num_repeats", 20, "Repetitions (mean and 1.96 std / sqrt(n) are reported).")
  flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
  flags.DEFINE_string("embeddings_out", None, "Write the generated clips' embeddings here (.npz).")
  flags.DEFINE_string("out", None, "metrics.json to write.")
  flags.mark_flags_as_required(["evaluator", "reference", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  out = epath.Path(f.out)
  if paths.is_local(out) and not out.parent.is_dir():  # an object store has no folders to check
    raise app.UsageError(f"--out={out}: folder {out.parent} does not exist.")
  try:
    evaluator = evaluator_lib.load_evaluator(f.evaluator)
    result = run(evaluator, f.reference, f.generated, split=f.split, crop=f.crop, num_repeats=f.num_repeats,
                 seed=f.seed, embeddings_out=f.embeddings_out)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  result["evaluator"] = f.evaluator
  result["evaluator_step"] = getattr(evaluator, "step", None)
  out.write_text(json.dumps(result, indent=2))
  t2m, skipped = result["t2m"], result["protocol"]["skipped"]
  print(f"{'clips':>16s}  {result['protocol']['num_clips']} (skipped {skipped['total']}: {skipped['by_reason']})")
  for name, value in [("fid", t2m["fid"]), ("mm_dist", t2m["mm_dist"]), ("diversity", t2m["diversity"]),
                      *((f"r_precision_{k}", v) for k, v in t2m["r_precision"].items())]:
    print(f"{name:>16s}  {value['mean']:.4f} ± {value['ci95']:.4f}")
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
