r"""Llama backbone: forward+backward step time, ours (JAX) vs HF transformers (torch).

  python bench/bench_backbone.py [--presets=tiny,smollm2_135m] [--shapes=2x128,1x128] [--steps=20,5]
      [--profile_steps=2]

Random weights, fp32, the same shapes in the same run, CPU. One step = the
mean next-token cross-entropy and its gradient w.r.t. all parameters. Then
(--profile_steps > 0) a jax.profiler trace of ours: the time of XLA's CPU ops
per step summed over threads, by op kind. Prints a markdown table and replaces the bench_backbone section of BENCHMARKS.md
(between <!-- bench_backbone:start --> and <!-- bench_backbone:end -->).
"""
import collections
import os
import pathlib
import platform
import re
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from flax import nnx  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import jax  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import numpy as np  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import torch  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
import transformers  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

from llamo_jax.models import presets  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)
from llamo_jax.models.llama import Llama  # pylint: disable=g-import-not-at-top  (after the sys.path/env setup above)

import benchmarks_md  # bench/benchmarks_md.py

_PRESETS = flags.DEFINE_list("presets", ["tiny", "smollm2_135m"], "Model presets to time.")
_SHAPES = flags.DEFINE_list("shapes", ["2x128", "1x128"],
                            "Batch x length per preset (same order as --presets).")
_STEPS = flags.DEFINE_list("steps", ["20", "5"],
                           "Timed steps per preset (after 2 warmup steps each).")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 2,
                                      "Steps of ours to trace per preset (0: no profile).")
_TIME = flags.DEFINE_bool("time", True, "Time ours against HF (--notime: the profile only).")
_WRITE = flags.DEFINE_bool("write", True, "Write the sections into BENCHMARKS.md.")

REPO = pathlib.Path(__file__).resolve().parents[1]
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


def make_ours(cfg, tokens):
  """(step fn, compile seconds, n params) of jit(value_and_grad(loss))."""
  model = Llama(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  n_params = sum(x.size for x in jax.tree.leaves(params))

  def loss_fn(params, tokens):
    logits, _ = nnx.merge(graphdef, params)(tokens)
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()

  start = time.perf_counter()
  step = jax.jit(jax.value_and_grad(loss_fn)).lower(params, tokens).compile()
  compile_s = time.perf_counter() - start
  return lambda: jax.block_until_ready(step(params, tokens)), compile_s, n_params


# Trace events that span other ops on the same thread (the executor, a scan's while
# loop, a thread pool wait inside a matmul), so counting them would count ops twice.
_CONTAINERS = ("ThunkExecutor", "end: ", "while", "conditional", "call", "SlinkyThreadPool")


def profile_ops(step, steps):
  """{op kind: ms per step} of `steps` traced calls of step, summed over XLA's CPU threads.

  The kind is the op's name without its ".N" suffix (ynn_fusion: a matmul fusion run by
  YNNPACK; wrapped_broadcast: a filled buffer; dynamic-slice_...: a slice copied out of a
  stacked array; ..._dynamic-update-slice_...: a write into one; copy_...: a layout copy).
  """
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      for _ in range(steps):
        step()
    data = jax.profiler.ProfileData.from_file(
        str(next(pathlib.Path(tmp).rglob("*.xplane.pb"))))
    kinds = collections.Counter()
    for plane in data.planes:
      for line in plane.lines:
        if "XLAEigen" not in line.name and "PjRtCpuClient" not in line.name:
          continue  # only the threads that run XLA's ops
        for event in line.events:
          if event.name.startswith(_CONTAINERS):
            continue  # spans that contain other ops (or a wait inside one): count the ops
          kinds[re.sub(r"\.\d+$", "", event.name)] += event.duration_ns / 1e6 / steps
  return kinds


def make_hf(cfg, tokens):
  """Step fn of HF LlamaForCausalLM loss.backward() on the same shapes."""
  rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling is not None:
    rope = {"rope_type": "llama3", "rope_theta": cfg.rope_theta,
            "factor": cfg.rope_scaling.factor,
            "low_freq_factor": cfg.rope_scaling.low_freq_factor,
            "high_freq_factor": cfg.rope_scaling.high_freq_factor,
            "original_max_position_embeddings":
                cfg.rope_scaling.original_max_position_embeddings}
  hf_cfg = transformers.LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
      num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
      rope_parameters=rope, tie_word_embeddings=cfg.tie_embeddings,
      max_position_embeddings=cfg.max_seq_len)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(hf_cfg).float().train()
  ids = torch.from_numpy(np.array(tokens)).long()

  def step():
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()

  return step


def _fmt(times):
  med = statistics.median(times) * 1e3
  return f"{med:.1f} ({min(times) * 1e3:.1f}-{max(times) * 1e3:.1f})"


def main(argv):
  del argv
  if not len(_SHAPES.value) == len(_STEPS.value) == len(_PRESETS.value):
    raise app.UsageError("--shapes and --steps need one entry per --presets entry.")
  rows, profile_rows = [], []
  for name, shape, steps in zip(_PRESETS.value, _SHAPES.value, _STEPS.value):
    cfg = presets.get_preset(name)
    b, t = (int(x) for x in shape.split("x"))
    tokens = jax.random.randint(jax.random.key(0), (b, t), 0, cfg.vocab_size, jnp.int32)
    ours_step, compile_s, n_params = make_ours(cfg, tokens)
    if _TIME.value:
      ours, hf = _time_interleaved([ours_step, make_hf(cfg, tokens)], int(steps))
      ratio = statistics.median(hf) / statistics.median(ours)
      rows.append(f"| {name} | {b}x{t} | {n_params / 1e6:.1f}M | {_fmt(ours)} | {_fmt(hf)} "
                  f"| {ratio:.2f}x | {compile_s:.1f} |")
      print(rows[-1], flush=True)
    if _PROFILE_STEPS.value:
      for _ in range(WARMUP):
        ours_step()
      kinds = profile_ops(ours_step, _PROFILE_STEPS.value)
      total = sum(kinds.values())
      top = kinds.most_common(8)
      top.append(("(all other ops)", total - sum(ms for _, ms in top)))
      profile_rows.extend(f"| {name} {b}x{t} | {kind} | {ms:.1f} | {100 * ms / total:.0f}% |"
                          for kind, ms in top)
      print("\n".join(profile_rows[-len(top):]), flush=True)

  load = os.getloadavg()
  command = (f"`python bench/bench_backbone.py --presets={','.join(_PRESETS.value)} "
             f"--shapes={','.join(_SHAPES.value)} --steps={','.join(_STEPS.value)}")
  machine = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"jax {jax.__version__} ({jax.default_backend()}), torch threads "
             f"{torch.get_num_threads()}; load average at the end {load[0]:.1f} / {load[1]:.1f} "
             "(1 / 5 min; other jobs shared the cores, so absolute times are noisy).")
  sections = {}
  if rows:
    sections["bench_backbone"] = "\n".join([
        "## Llama backbone: forward+backward step (bench/bench_backbone.py)",
        "",
        f"{command}`: random weights, fp32, "
        "mean next-token cross-entropy + gradient w.r.t. all parameters; ours = "
        "jit(value_and_grad) of `Llama` (scan_layers, no remat), HF = "
        f"`LlamaForCausalLM(...).loss.backward()` (transformers {transformers.__version__}, "
        f"torch {torch.__version__}, sdpa attention). Milliseconds: median (min-max) of "
        f"the timed steps (--steps) after {WARMUP} warmup steps, ours and HF alternating step by "
        "step so both see the same load; speedup = HF median / ours.",
        "",
        machine,
        "",
        "| preset | B x T | params | ours ms | HF torch ms | speedup | jit compile s |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
  if profile_rows:
    sections["bench_backbone_profile"] = "\n".join([
        "## Llama backbone: where our step's time goes (bench/bench_backbone.py)",
        "",
        f"{command} --profile_steps={_PROFILE_STEPS.value}{'' if _TIME.value else ' --notime'}`: "
        f"a jax.profiler trace of {_PROFILE_STEPS.value} steps of ours (after {WARMUP} "
        "warmup steps): milliseconds per step that XLA's CPU threads spend in each kind of op "
        "(the op name without its .N suffix), summed over the threads, leaf ops only (a scan's "
        "while loop and a thread pool's wait inside an op are not counted again). "
        "ynn_fusion: matmul fusions (YNNPACK); dot: the other dots (attention); "
        "wrapped_broadcast: a buffer filled with a constant; dynamic-slice_bitcast_fusion: "
        "one layer's weights copied out of the stacked [L,...] params; "
        "bitcast_dynamic-update-slice_fusion: one layer's gradient or residual written into "
        "a stacked [L,...] buffer; copy*/transpose*: layout copies.",
        "",
        machine,
        "",
        "| preset | op kind | ms per step (thread time) | share |",
        "|---|---|---|---|",
        *profile_rows,
    ])
  for name, table in sections.items():
    print(table)
    if _WRITE.value:
      print(f"wrote {benchmarks_md.write_section(name, table)}")


if __name__ == "__main__":
  app.run(main)
