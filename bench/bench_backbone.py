r"""Llama backbone: forward+backward step time, ours (JAX) vs HF transformers (torch).

  python bench/bench_backbone.py [--presets=tiny,smollm2_135m] [--shapes=2x128,1x128] [--steps=20,5]

Random weights, fp32, the same shapes in the same run, CPU. One step = the
mean next-token cross-entropy and its gradient w.r.t. all parameters. Prints a
markdown table and replaces the bench_backbone section of BENCHMARKS.md
(between <!-- bench_backbone:start --> and <!-- bench_backbone:end -->).
"""
import os
import pathlib
import platform
import statistics
import sys
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
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")

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
  rows = []
  for name, shape, steps in zip(_PRESETS.value, _SHAPES.value, _STEPS.value):
    cfg = presets.get_preset(name)
    b, t = (int(x) for x in shape.split("x"))
    tokens = jax.random.randint(jax.random.key(0), (b, t), 0, cfg.vocab_size, jnp.int32)
    ours_step, compile_s, n_params = make_ours(cfg, tokens)
    ours, hf = _time_interleaved([ours_step, make_hf(cfg, tokens)], int(steps))
    ratio = statistics.median(hf) / statistics.median(ours)
    rows.append(f"| {name} | {b}x{t} | {n_params / 1e6:.1f}M | {_fmt(ours)} | {_fmt(hf)} "
                f"| {ratio:.2f}x | {compile_s:.1f} |")
    print(rows[-1], flush=True)

  load = os.getloadavg()
  table = "\n".join([
      "## Llama backbone: forward+backward step (bench/bench_backbone.py)",
      "",
      f"`python bench/bench_backbone.py --presets={','.join(_PRESETS.value)} "
      f"--shapes={','.join(_SHAPES.value)} --steps={','.join(_STEPS.value)}`: random weights, fp32, "
      "mean next-token cross-entropy + gradient w.r.t. all parameters; ours = "
      "jit(value_and_grad) of `Llama` (scan_layers, no remat), HF = "
      f"`LlamaForCausalLM(...).loss.backward()` (transformers {transformers.__version__}, "
      f"torch {torch.__version__}, sdpa attention). Milliseconds: median (min-max) of "
      f"the timed steps (--steps) after {WARMUP} warmup steps, ours and HF alternating step by step "
      "so both see the same load; speedup = HF median / ours.",
      "",
      f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
      f"jax {jax.__version__} ({jax.default_backend()}), torch threads "
      f"{torch.get_num_threads()}; load average at the end {load[0]:.1f} / {load[1]:.1f} "
      "(1 / 5 min; other jobs shared the cores, so absolute times are noisy).",
      "",
      "| preset | B x T | params | ours ms | HF torch ms | speedup | jit compile s |",
      "|---|---|---|---|---|---|---|",
      *rows,
  ])
  print(table)
  if _WRITE.value:
    path = benchmarks_md.write_section("bench_backbone", table)
    print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
