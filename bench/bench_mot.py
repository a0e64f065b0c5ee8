"""MoT backbone vs the dense Llama backbone: forward+backward step time on CPU.

Random weights, fp32; loss = mean square of the final-normed backbone output
(the LM head is identical in both and left out so the ratio shows the blocks);
gradient w.r.t. all block params. Sequences mix text and motion like T2M
examples (`[BOS] caption [BOM] m1..mK [EOM]`-sized runs). Three variants on the
same tokens: dense Llama; MoT with buffers sized to the token counts (what
training uses); MoT with full-length buffers (each expert on all T tokens,
i.e. the cost of the naive "run both experts, select" routing).
Prints a markdown table and replaces the bench_mot section of BENCHMARKS.md
(between <!-- bench_mot:start --> and <!-- bench_mot:end -->).
"""
import dataclasses
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flax import nnx  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import jax  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

from llamo_jax.models import presets  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.models.llama import Llama  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.models.mot import MoT  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

import benchmarks_md  # pylint: disable=g-import-not-at-top  (after the sys.path setup above: bench/benchmarks_md.py)

_PRESETS = flags.DEFINE_list("presets", ["tiny", "smollm2_135m"], "Model shapes.")
_LAYERS = flags.DEFINE_list("layers", ["2", "4"], "n_layers per preset (fewer = faster).")
_SHAPES = flags.DEFINE_list("shapes", ["4x128", "2x256"], "BxT per preset.")
_STEPS = flags.DEFINE_list("steps", ["20", "5"], "Timed steps per preset.")
_MOTION_FRAC = flags.DEFINE_float("motion_frac", 0.6, "Fraction of motion tokens per sequence.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")

WARMUP = 2


def _time_interleaved(fns, steps):
  """Per-fn step times, running the fns in turn so they see the same machine load."""
  for fn in fns:
    for _ in range(WARMUP):
      fn()
  times = [[] for _ in fns]
  for _ in range(steps):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      fn()
      out.append(time.perf_counter() - start)
  return times


def make_step(model, h, modality):
  """(step fn, compile s) of jit(value_and_grad(mean square of the backbone output))."""
  graphdef, params = nnx.split(model)

  def loss_fn(params, h, modality):
    m = nnx.merge(graphdef, params)
    if modality is None:
      out, _ = m.backbone(h)
    else:
      out, _, _ = m.mot_backbone(h, modality)
    return jnp.mean(jnp.square(out))

  start = time.perf_counter()
  step = jax.jit(jax.value_and_grad(loss_fn)).lower(params, h, modality).compile()
  compile_s = time.perf_counter() - start
  return lambda: jax.block_until_ready(step(params, h, modality)), compile_s


def _fmt(times):
  return f"{statistics.median(times) * 1e3:.1f} ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})"


def main(argv):
  del argv
  n = len(_PRESETS.value)
  if not len(_LAYERS.value) == len(_SHAPES.value) == len(_STEPS.value) == n:
    raise app.UsageError("--layers, --shapes and --steps need one entry per --presets entry.")
  rows = []
  for name, layers, shape, steps in zip(_PRESETS.value, _LAYERS.value, _SHAPES.value,
                                        _STEPS.value):
    cfg = dataclasses.replace(presets.get_preset(name), n_layers=int(layers))
    b, t = (int(x) for x in shape.split("x"))
    n_motion = int(round(_MOTION_FRAC.value * t))
    # Per row: a caption-sized text prefix, the motion run, a text tail; shifted per row.
    modality = jnp.zeros((b, t), jnp.int32)
    for i in range(b):
      start = 4 + i * 3
      modality = modality.at[i, start:start + n_motion].set(1)
    h = jax.random.normal(jax.random.key(0), (b, t, cfg.dim))
    dense, dense_c = make_step(Llama(cfg, rngs=nnx.Rngs(0)), h, None)
    mot, mot_c = make_step(MoT(cfg, text_capacity=t - n_motion, motion_capacity=n_motion,
                               rngs=nnx.Rngs(0)), h, modality)
    full, _ = make_step(MoT(cfg, rngs=nnx.Rngs(0)), h, modality)
    td, tm, tf = _time_interleaved([dense, mot, full], int(steps))
    md, mm, mf = (statistics.median(x) for x in (td, tm, tf))
    rows.append(f"| {name} (L={layers}) | {b}x{t} | {t - n_motion}/{n_motion} | {_fmt(td)} "
                f"| {_fmt(tm)} | {_fmt(tf)} | **{mm / md:.2f}** | {mf / md:.2f} "
                f"| {dense_c:.1f} / {mot_c:.1f} |")
    print(rows[-1], flush=True)

  load = os.getloadavg()
  table = "\n".join([
      "## MoT backbone vs dense Llama backbone: forward+backward step (bench/bench_mot.py)",
      "",
      f"`python bench/bench_mot.py --presets={','.join(_PRESETS.value)} "
      f"--layers={','.join(_LAYERS.value)} --shapes={','.join(_SHAPES.value)} "
      f"--steps={','.join(_STEPS.value)} --motion_frac={_MOTION_FRAC.value}`: random weights, "
      "fp32, scan_layers, no remat; loss = mean square of the final-normed backbone output "
      "(LM head left out: identical in both), gradient w.r.t. all params. MoT = per-sequence "
      "capacity buffers sized to the text/motion token counts (split \"all\"); MoT full = "
      "buffers of length T (= running both experts on every token). Milliseconds: median "
      f"(min-max) after {WARMUP} warmup steps, variants alternating step by step. "
      "Ratio = MoT median / dense median (target ~1).",
      "",
      f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
      f"jax {jax.__version__} ({jax.default_backend()}); load average at the end "
      f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min; shared cores, noisy).",
      "",
      "| shape | B x T | text/motion per seq | dense ms | MoT ms | MoT full ms | MoT/dense "
      "| full/dense | compile s dense / MoT |",
      "|---|---|---|---|---|---|---|---|---|",
      *rows,
  ])
  print(table)
  if _WRITE.value:
    print(f"wrote {benchmarks_md.write_section('bench_mot', table)}")


if __name__ == "__main__":
  app.run(main)
