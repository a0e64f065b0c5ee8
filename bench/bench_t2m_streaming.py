"""Streaming text-to-motion latency: prefill, ms per latent, motion frames/s (CPU, random weights).

  python bench/bench_t2m_streaming.py [--presets=tiny,smollm2_135m] [--batches=1,4]
      [--latents=16] [--flow_steps=50] [--cfg_scale=4] [--prompt_len=24]
      [--dtypes=float32/float32,bfloat16/float32,bfloat16/bfloat16]

Per model preset and batch: LLaMo (MoT backbone + flow head width 1024 depth 3,
latent 32) and the paper-size motion VAE (263-dim), random weights, fp32, the
exit head forced off so every sequence runs --latents latents, each figure for each
--dtypes pair FLOW/BACKBONE (generation's flow_dtype and backbone_dtype; the pairs timed
alternately). Measured after compilation:
  * prefill: one jitted `text_to_motion.prefill_branches` of the prompt batch, both CFG
    branches (B prompt rows + B unconditional [BOM] rows), per backbone dtype, and beside it
    the whole prompt in both branches (2B rows, float32), timed alternately;
  * first frames: `stream_motion` until its first chunk (prefill + first latent's
    ODE + one VAE decode_step);
  * ms per latent: median time between later chunks of `stream_motion` (one cached
    decode step of both branches, the flow ODE with CFG, the exit head, one VAE
    decode_step and the host sync that hands the 4 frames to the caller);
  * of which flow ODE: `flow_head.sample` alone (CFG) on B random conditions, and
    beside it the reference ODE that runs the whole head (conditioning included)
    at every step, timed alternately;
  * fused: `generate_motion` (one jitted while_loop, no VAE) total / latents;
  * latent difference: the fused latents (same keys) against the first dtype's.
And the flow ODE's two matmul shapes alone in float32 and two bfloat16 variants.
Frames/s = 4 * batch / (s per latent); real time at 20 fps needs 5 latents/s per clip.
Prints a table and writes the bench_t2m_streaming section of BENCHMARKS.md.
"""
import os
import pathlib
import platform
import sys
import time

from absl import app
from absl import flags

# This checkout's llamo_jax, not an installed one (as the other benches).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from flax import nnx  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import jax  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import numpy as np  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

import benchmarks_md  # pylint: disable=g-import-not-at-top  (bench/benchmarks_md.py)
from llamo_jax.generation import prompts as prompts_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.generation import streaming  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.generation import text_to_motion  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import flow_head as flow_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import llamo as llamo_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import motion_vae  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import presets  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

_PRESETS = flags.DEFINE_list("presets", ["tiny", "smollm2_135m"],
                             "LLM presets (models/presets.py).")
_LAYERS = flags.DEFINE_integer("layers", 0, "Override n_layers (0: the preset's).")
_BATCHES = flags.DEFINE_list("batches", ["1", "4"], "Prompts generated together.")
_LATENTS = flags.DEFINE_integer("latents", 16, "Latents per clip (4 frames each).")
_FLOW_STEPS = flags.DEFINE_integer("flow_steps", 50, "Euler steps per latent.")
_CFG_SCALE = flags.DEFINE_float("cfg_scale", 4.0, "Classifier-free guidance weight.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 24, "Prompt tokens ([BOS] .. [BOM]).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32/float32", "bfloat16/float32", "bfloat16/bfloat16"],
                            "FLOW/BACKBONE matmul dtypes (generation's flow_dtype / backbone_dtype), "
                            "timed side by side; differences are against the first.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def _timed_stream(model, vae, prompts, stats, kw):
  """(seconds to the first chunk, [seconds between later chunks])."""
  times = []
  start = time.perf_counter()
  for chunk in streaming.stream_motion(model, vae, prompts, jax.random.key(1),
                                       latent_mean=stats[0], latent_std=stats[1], **kw):
    chunk.frames.block_until_ready()
    now = time.perf_counter()
    times.append(now - start)
    start = now
  return times[0], times[1:]


def _randomize_zero_kernels(module, seed):
  """Random N(0, 0.02) values in the module's all-zero kernels (the flow head's modulations and
  out_proj are zero-initialised: at init it outputs 0, every latent would be its noise and
  float32 and bfloat16 would sample the same)."""
  state = nnx.state(module, nnx.Param)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [0.02 * jax.random.normal(k, x.shape) if x.ndim == 2 and not np.any(x) else x
            for x, k in zip(leaves, keys)]
  nnx.update(module, jax.tree.unflatten(treedef, leaves))


def _matmul_variants(width, rows, grid_rows, layers, steps):
  """The flow ODE's two matmul shapes alone, median of 7 with the dtypes alternating: the hoisted
  modulations of one block [grid_rows,W]x[W,3W], and the x path's layers x steps dependent
  [rows,W]x[W,W] matmuls (each through a tanh) cycling through `layers` distinct weights as
  the ODE does (fc1, fc2 of each block), and beside it through one weight (which stays in
  cache); in float32, bfloat16 operands with float32 accumulation (`flow_dtype="bfloat16"`)
  and bfloat16 operands and output."""
  bf16 = jnp.bfloat16
  modes = ("float32", "bfloat16, f32 acc", "bfloat16, bf16 out")

  def matmul(x, w, mode):
    if mode == "float32":
      return x @ w
    out = jnp.dot(x.astype(bf16), w, preferred_element_type=jnp.float32 if mode.endswith("acc") else bf16)
    return out.astype(jnp.float32)

  def x_path(x, ws, mode):
    def step(_, y):
      for i in range(layers):
        y = jnp.tanh(matmul(y, ws[i % len(ws)], mode))
      return y
    return jax.lax.fori_loop(0, steps, step, x)

  keys = jax.random.split(jax.random.key(0), 3 + layers)
  a = jax.random.normal(keys[0], (grid_rows, width))
  k = jax.random.normal(keys[1], (width, 3 * width))
  x = jax.random.normal(keys[2], (rows, width))
  ws = [jax.random.normal(key, (width, width)) / width**0.5 for key in keys[3:]]
  runs = []
  for mode in modes:
    cast = (lambda v: v) if mode == "float32" else (lambda v: v.astype(bf16))
    big = jax.jit(lambda a, k, m=mode: matmul(a, k, m))
    path = jax.jit(lambda x, ws, m=mode: x_path(x, ws, m))
    runs += [(mode, 0, big, (a, cast(k))), (mode, 1, path, (x, [cast(w) for w in ws])),
             (mode, 2, path, (x, [cast(ws[0])]))]
  times = {(mode, j): [] for mode, j, _, _ in runs}
  for _, _, fn, args in runs:
    fn(*args).block_until_ready()
  for _ in range(7):
    for mode, j, fn, args in runs:
      start = time.perf_counter()
      fn(*args).block_until_ready()
      times[(mode, j)].append(time.perf_counter() - start)
  return ["| " + " | ".join([mode] + [f"{1e3 * np.median(times[(mode, j)]):.1f}" for j in range(3)]) + " |"
          for mode in modes]


def main(argv):
  del argv
  rows = []
  dtypes = _DTYPES.value  # "FLOW/BACKBONE"
  pairs = {d: dict(zip(("flow_dtype", "backbone_dtype"), d.split("/"))) for d in dtypes}
  for d, pair in pairs.items():
    if len(pair) != 2 or d.count("/") != 1:
      raise app.UsageError(f"--dtypes item {d!r} is not FLOW/BACKBONE, e.g. bfloat16/float32.")
    for name, dtype in pair.items():
      flow_lib.check_compute_dtype(dtype, name)
  backbones = list(dict.fromkeys(p["backbone_dtype"] for p in pairs.values()))
  flows = list(dict.fromkeys(p["flow_dtype"] for p in pairs.values()))
  vae = motion_vae.MotionVAE(motion_vae.get_preset("paper"), rngs=nnx.Rngs(1))
  stats = (np.zeros(32, np.float32), np.ones(32, np.float32))
  kw = dict(max_latents=_LATENTS.value, cfg_scale=_CFG_SCALE.value, flow_steps=_FLOW_STEPS.value,
            method="euler", min_latents=_LATENTS.value)
  max_len = _PROMPT_LEN.value + _LATENTS.value - 1  # the cache generation uses
  for preset in _PRESETS.value:
    llama = presets.get_preset(preset)
    if _LAYERS.value:
      llama = llama.from_dict({**llama.to_dict(), "n_layers": _LAYERS.value})
    cfg = llamo_lib.LLaMoConfig(llama=llama)
    model = llamo_lib.LLaMo(cfg, rngs=nnx.Rngs(0))
    _randomize_zero_kernels(model.flow_head, 3)
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    graphdef, params = nnx.split(model)

    # The params generation samples with (flow head f32: the prefill does not run it).
    backbone_params = {d: text_to_motion.split_for_sampling(model, "float32", d)[1] for d in backbones}

    @jax.jit
    def prefill(params, prompt):
      # What generation runs: both CFG branches, h at [BOM] and the cache only (no text logits).
      return text_to_motion.prefill_branches(nnx.merge(graphdef, params), prompt, max_len,
                                             guided=True)

    @jax.jit
    def prefill_whole(params, prompt):
      """The unconditional branch as the whole prompt with its caption in UNCOND_SEGMENT (2B
      rows of T tokens; what generation ran before `prefill_branches`)."""
      tokens = jnp.concatenate([prompt.tokens] * 2)
      uncond = jnp.where(prompt.segment_ids > 0, text_to_motion.UNCOND_SEGMENT, 0).at[:, -1].set(1)
      cache, _, h = llamo_lib.prefill(
          nnx.merge(graphdef, params), tokens, jnp.zeros(tokens.shape + (cfg.latent_dim,)),
          jnp.zeros_like(tokens), max_len, jnp.concatenate([prompt.positions] * 2),
          jnp.concatenate([prompt.segment_ids, uncond]))
      return cache, h

    for batch in map(int, _BATCHES.value):
      rng = np.random.default_rng(batch)
      prompts = [np.concatenate([rng.integers(1, llama.vocab_size, _PROMPT_LEN.value - 1),
                                 [llamo_lib.bom_id(cfg)]]).astype(np.int32)
                 for _ in range(batch)]
      prompt = prompts_lib.PromptBatch(*map(jnp.asarray, prompts_lib.left_pad(prompts)))
      prefill_runs = [(d, prefill, backbone_params[d]) for d in backbones] + [("whole", prefill_whole, params)]
      prefill_times = {d: [] for d, _, _ in prefill_runs}
      for _, fn, p in prefill_runs:
        fn(p, prompt)[1].block_until_ready()
      for _ in range(7):  # alternating, so all see the same machine load
        for d, fn, p in prefill_runs:
          start = time.perf_counter()
          fn(p, prompt)[1].block_until_ready()
          prefill_times[d].append(time.perf_counter() - start)
      prefill_ms = {d: 1e3 * np.median(times) for d, times in prefill_times.items()}

      head_graphdef, head_params = nnx.split(model.flow_head)

      @jax.jit
      def flow_ode(head_params, h, h_uncond):
        return flow_lib.sample(nnx.merge(head_graphdef, head_params), h, jax.random.key(0),
                               h_uncond=h_uncond, cfg_scale=_CFG_SCALE.value,
                               steps=_FLOW_STEPS.value)

      @jax.jit
      def flow_ode_stepwise(head_params, h, h_uncond):
        """The same ODE with the whole head (conditioning included) run at every step."""
        head = nnx.merge(head_graphdef, head_params)
        x0 = jax.random.normal(jax.random.key(0), h.shape[:-1] + (head.latent_dim,))
        velocity = flow_lib.guided_velocity(head, h, h_uncond, _CFG_SCALE.value)
        return flow_lib.integrate(velocity, x0, steps=_FLOW_STEPS.value)

      # Every timing below alternates the dtypes (and the two ODEs), so all see the same load.
      h = jax.random.normal(jax.random.key(2), (batch, llama.dim))
      ode_runs = [(dtype, fn, flow_lib.sampling_state(head_params, dtype))
                  for dtype in flows for fn in (flow_ode, flow_ode_stepwise)]
      ode_times = {(dtype, fn): [] for dtype, fn, _ in ode_runs}
      for _, fn, p in ode_runs:
        fn(p, h, h + 1).block_until_ready()
      for _ in range(5):
        for dtype, fn, p in ode_runs:
          start = time.perf_counter()
          fn(p, h, h + 1).block_until_ready()
          ode_times[(dtype, fn)].append(time.perf_counter() - start)
      ode_ms = {k: 1e3 * np.median(t) for k, t in ode_times.items()}

      for dtype in dtypes:  # compiles
        _timed_stream(model, vae, prompts, stats, dict(kw, **pairs[dtype]))
      firsts, steps = {d: [] for d in dtypes}, {d: [] for d in dtypes}
      for _ in range(2):
        for dtype in dtypes:
          first, later = _timed_stream(model, vae, prompts, stats, dict(kw, **pairs[dtype]))
          firsts[dtype].append(first)
          steps[dtype] += later

      latents, fused = {}, {d: [] for d in dtypes}
      for dtype in dtypes:  # compiles
        text_to_motion.generate_motion(model, prompts, jax.random.key(1), **pairs[dtype],
                                       **kw)[0].block_until_ready()
      for _ in range(2):
        for dtype in dtypes:
          start = time.perf_counter()
          out, lengths = text_to_motion.generate_motion(model, prompts, jax.random.key(1),
                                                        **pairs[dtype], **kw)
          out.block_until_ready()
          fused[dtype].append((time.perf_counter() - start) / _LATENTS.value)
          assert np.all(np.asarray(lengths) == _LATENTS.value)
          latents[dtype] = np.asarray(out)

      for dtype in dtypes:
        per_latent = float(np.median(steps[dtype]))
        fps = motion_vae.FRAMES_PER_LATENT * batch / per_latent
        diff = np.abs(latents[dtype] - latents[dtypes[0]])
        flow, backbone = pairs[dtype]["flow_dtype"], pairs[dtype]["backbone_dtype"]
        ode = ode_ms[(flow, flow_ode)]
        ratio = ode_ms[(flows[0], flow_ode)] / ode
        stepwise = ode_ms[(flow, flow_ode_stepwise)]
        prefills = (f"{prefill_ms[backbone]:.1f} | " +
                    (f"{prefill_ms['whole']:.1f}" if dtype == dtypes[0] else ""))
        rows.append(f"| {preset} (L={llama.n_layers}, {n_params / 1e6:.0f}M) | {batch} | {dtype} | "
                    f"{prefills} | {1e3 * np.median(firsts[dtype]):.0f} | "
                    f"{1e3 * per_latent:.1f} | {ode:.1f} ({ratio:.2f}x) | "
                    f"{stepwise:.1f} ({stepwise / ode:.1f}x) | "
                    f"{fps:,.0f} | {fps / batch / 20:.2f}x | {1e3 * np.median(fused[dtype]):.1f} | "
                    f"{diff.max():.2g} / {diff.mean():.2g} (mean abs latent "
                    f"{np.abs(latents[dtypes[0]]).mean():.2f}) |")
        print(rows[-1], flush=True)

  width, steps = cfg.flow_width, _FLOW_STEPS.value
  n_mm = 2 * cfg.flow_depth  # the x path's W x W matmuls per velocity: fc1, fc2 per block
  matmul_rows = _matmul_variants(width, 8, 8 * steps, n_mm, steps)
  load = os.getloadavg()
  layers = f" --layers={_LAYERS.value}" if _LAYERS.value else ""
  table = "\n".join([
      "## Text to motion: streaming generation (bench/bench_t2m_streaming.py)",
      "",
      f"`python bench/bench_t2m_streaming.py --presets={','.join(_PRESETS.value)}{layers} "
      f"--batches={','.join(_BATCHES.value)} --latents={_LATENTS.value} "
      f"--flow_steps={_FLOW_STEPS.value} --cfg_scale={_CFG_SCALE.value:g} "
      f"--prompt_len={_PROMPT_LEN.value} --dtypes={','.join(dtypes)}`: random weights "
      "(the flow head's zero-initialised kernels too, N(0, 0.02)), fp32 weights, jax "
      f"{jax.__version__} on {jax.devices()[0].platform}; LLaMo flow head width {cfg.flow_width} "
      f"depth {cfg.flow_depth}, {_FLOW_STEPS.value} Euler steps with CFG (2B rows through the "
      "backbone), VAE preset paper (width 512). Dtypes: `flow_dtype` / `backbone_dtype` of "
      "generation, the matmuls of the flow ODE (W x W / W x kW) and of the backbone's "
      "projections in that dtype (bfloat16: bf16 inputs and weights, f32 accumulation; the ODE "
      "state and updates, the residual stream, norms, attention and KV cache f32); the pairs are "
      "timed alternately in one run. Prefill: `prefill_branches` in the row's backbone dtype, both CFG branches "
      "(the unconditional one runs its [BOM] alone), h at [BOM] only (no text logits), as "
      "generation runs it, median of 7, timed alternately with the whole prompt in both "
      "branches (2B rows of T tokens, the caption in the unconditional segment: the same keys "
      "and values where the branch looks, `tests/generation/test_text_to_motion.py`); it does not "
      "run the flow head (float32, once per batch, in the first row). "
      "First frames: prefill + first latent + VAE step (median of 2 streams). ms per latent: "
      f"median over the later {_LATENTS.value - 1} chunks of 2 `stream_motion` runs (cached "
      "decode step + flow ODE + exit head + VAE `decode_step` + host sync); of which flow ODE: "
      "`flow_head.sample` alone (CFG, median of 5; conditioning half of the head run once for "
      f"all steps; in brackets the speed-up over {flows[0]}), and the same "
      "ODE running the whole head at every step (the reference `integrate(guided_velocity)`), "
      "timed alternately. Fused: `generate_motion`'s single jitted "
      "loop, no VAE, per latent (median of 2). Real time: frames/s per clip over 20 fps "
      f"(HumanML3D). Latent difference: `generate_motion`'s {_LATENTS.value} latents per clip "
      f"(same keys, each fed back) against {dtypes[0]}'s, max / mean absolute.",
      "",
      f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average at the end "
      f"{load[0]:.1f}.",
      "",
      "| model | batch | flow / backbone dtype | prefill ms | prefill, whole prompt in both branches | "
      "first frames ms | ms per latent (stream) | of which flow ODE | "
      "flow ODE, whole head per step | frames/s (all clips) | x real time per clip | "
      "ms per latent (fused) | latent difference (max / mean) |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
      *rows,
      "",
      f"The flow ODE's matmuls at batch 4 (8 rows with CFG) by dtype, alone (median of 7, the "
      f"dtypes alternating): the hoisted modulations of one block, [{8 * steps},{width}] x "
      f"[{width},{3 * width}], and the x path's {n_mm * steps} dependent [8,{width}] x "
      f"[{width},{width}] per latent (each through a tanh), cycling through its {n_mm} "
      "distinct weights as the ODE does, and through one weight (which stays in cache).",
      "",
      f"| matmul dtype | [{8 * steps},{width}] x [{width},{3 * width}] ms | "
      f"{n_mm * steps} x [8,{width}] x [{width},{width}], {n_mm} weights ms | "
      "the same, one weight ms |",
      "|---|---|---|---|",
      *matmul_rows,
  ])
  print(table)
  if _WRITE.value:
    print(f"wrote {benchmarks_md.write_section('bench_t2m_streaming', table)}")


if __name__ == "__main__":
  app.run(main)
