r"""Evaluation time: the T2M protocol (Real-motion row, 20 repeats) and the caption metrics, per evaluator.

  python bench/bench_eval.py --evaluators=/work/evaluators/guo_hml263,/work/evaluators/tmr_hml263 \
      --reference=data/synthetic_20fps [--split=test] [--num_repeats=20] [--write=True]

For each evaluator: load time, motion and text encoding throughput (every clip of the split,
whole clips), and the wall time of `evaluate_motions.run` on the reference against itself
(the Real-motion row: 2 x num_repeats embedding passes plus the metrics), with its R@1, R@3
and FID (how well the evaluator matches held-out real motions to their captions). Then the caption metrics (BLEU, ROUGE-L, CIDEr) on the split's captions (first caption
against the others). Prints the figures and replaces the bench_eval section of BENCHMARKS.md.
"""
import pathlib
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from llamo_jax import evaluate_motions  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.eval import t2m_protocol  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.eval import text_metrics  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.tasks import evaluator as evaluator_lib  # pylint: disable=g-import-not-at-top  (same)

import benchmarks_md  # bench/benchmarks_md.py

_EVALUATORS = flags.DEFINE_list("evaluators", None, "Evaluator workdirs or imported evaluator folders.")
_REFERENCE = flags.DEFINE_string("reference", "data/synthetic_20fps", "HumanML3D-layout reference corpus.")
_SPLIT = flags.DEFINE_string("split", "test", "Split evaluated.")
_REPEATS = flags.DEFINE_integer("num_repeats", 20, "Protocol repetitions.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def main(argv):
  del argv
  rows = []
  clips = None
  for path in _EVALUATORS.value:
    ckpts = pathlib.Path(path) / "checkpoints"
    steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []
    name = f"{path} (step {steps[-1]})" if steps else path
    start = time.perf_counter()
    ev = evaluator_lib.load_evaluator(path)
    load_s = time.perf_counter() - start
    clips = t2m_protocol.read_folder(_REFERENCE.value, ev.representation, _SPLIT.value, t2m_protocol.Skips(),
                                     min_len=evaluate_motions.REFERENCE_MIN_LEN)
    kept = t2m_protocol.select_clips(clips, ev, "none", t2m_protocol.Skips(), "reference")
    motions = [c.features[:len(c.features) - len(c.features) % ev.unit_length] for c in kept]
    ev.encode_motions(motions[:8])  # compile
    start = time.perf_counter()
    ev.encode_motions(motions)
    motion_rate = len(motions) / (time.perf_counter() - start)
    texts = [t for c in kept for t in c.captions]
    ev.encode_texts(texts[:8])
    start = time.perf_counter()
    ev.encode_texts(texts)
    text_rate = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    m = evaluate_motions.run(ev, _REFERENCE.value, None, split=_SPLIT.value, num_repeats=_REPEATS.value,
                             progress=False)
    run_s = time.perf_counter() - start
    t2m = m["t2m"]
    top = {k: f"{v['mean']:.3f} ± {v['ci95']:.3f}" for k, v in t2m["r_precision"].items()}
    rows.append(f"| {name} | {m['protocol']['num_clips']} | {load_s:.1f} | {motion_rate:.0f} | {text_rate:.0f} | "
                f"{run_s:.1f} | {top['top1']} | {top['top3']} | {t2m['fid']['mean']:.3f} ± {t2m['fid']['ci95']:.3f} |")
  preds = [c.captions[0] for c in clips if len(c.captions) > 1]
  refs = [list(c.captions[1:]) for c in clips if len(c.captions) > 1]
  start = time.perf_counter()
  m2t = text_metrics.m2t_metrics(preds, refs)
  m2t_s = time.perf_counter() - start
  intro = (f"`python bench/bench_eval.py --evaluators={','.join(_EVALUATORS.value)} --reference={_REFERENCE.value} "
           f"--split={_SPLIT.value} --num_repeats={_REPEATS.value}`. Real-motion row of `evaluate_motions` "
           f"(the {_SPLIT.value} split against itself, protocol crop, {_REPEATS.value} repeats: "
           f"2 x {_REPEATS.value} embedding passes plus FID/R-precision/Diversity); encoding rates on whole clips. "
           f"Caption metrics (BLEU-1/4, ROUGE-L, CIDEr-D) of {len(preds)} captions (each clip's first caption "
           f"against its others): {m2t_s:.2f} s; BLEU-4 {m2t['bleu4']:.3f}, CIDEr {m2t['cider']:.3f} "
           "(the spread of the corpus's own paraphrases). The CPU was shared with other jobs.")
  benchmarks_md.publish("bench_eval", "Evaluation time (bench/bench_eval.py)", intro,
                        ["evaluator", "clips", "load s", "motions/s", "texts/s", "Real row s", "R@1", "R@3", "FID"],
                        rows, write=_WRITE.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["evaluators"])
  app.run(main)
