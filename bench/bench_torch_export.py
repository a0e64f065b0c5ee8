"""JAX LLaMo vs its PyTorch export (llamo_jax.pytorch), side by side in one process on CPU.

Two measurements on the same random weights (exported with convert/torch_export.py):
  * forward+backward: loss = mean(h^2) + mean(flow_head(x, t, h)^2) over a T2M-like
    sequence (text prefix, motion run, text tail), gradient w.r.t. every param. JAX:
    one jitted value_and_grad, MoT buffers sized to the token counts (as training);
    PyTorch: eager autograd, exact routing. Steps alternate between the two.
  * generation: text to motion latents for B prompts, max_latents latents each (the exit
    threshold is set to 1 so every sequence runs to the end), Euler with CFG; JAX's fused
    `generate_motion` loop vs `llamo_jax.pytorch.sampling.generate_motion` (eager), no VAE.
    frames/s = 4 frames per latent x latents x B / wall time.
Prints a markdown table and replaces the bench_torch_export section of BENCHMARKS.md.
"""
import dataclasses
import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# This checkout's llamo_jax, not an installed one.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import jax  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import numpy as np  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
import torch  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

from llamo_jax.convert import torch_export  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.generation import text_to_motion  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import flow_head as flow_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import llamo as llamo_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.models import presets  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.pytorch import model as torch_model  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.pytorch import sampling as torch_sampling  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

import benchmarks_md  # pylint: disable=g-import-not-at-top  (after the sys.path setup above: bench/benchmarks_md.py)

_PRESETS = flags.DEFINE_list("presets", ["tiny", "smollm2_135m"], "Model shapes.")
_LAYERS = flags.DEFINE_list("layers", ["2", "4"], "n_layers per preset (fewer = faster).")
_SHAPE = flags.DEFINE_string("shape", "2x128", "BxT of the forward+backward step.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed forward+backward steps per side.")
_BATCHES = flags.DEFINE_list("batches", ["1", "4"], "Generation batch sizes.")
_LATENTS = flags.DEFINE_integer("latents", 8, "Latents generated per prompt.")
_FLOW_STEPS = flags.DEFINE_integer("flow_steps", 50, "Euler steps of the flow ODE.")
_FLOW_WIDTH = flags.DEFINE_integer("flow_width", 1024, "Flow head width (depth 3).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed generations per side.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def random_llamo(cfg: llamo_lib.LLaMoConfig, seed: int = 0) -> llamo_lib.LLaMo:
  """A LLaMo with every param N(0, 0.02) (norm scales 1 + that), drawn in numpy."""
  model = nnx.eval_shape(lambda: llamo_lib.LLaMo(cfg, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed)
  flat = {p: (p[-1] == "scale") + 0.02 * rng.standard_normal(v.get_value().shape).astype(np.float32)
          for p, v in nnx.state(model, nnx.Param).flat_state()}
  nnx.update(model, nnx.State.from_flat_path({p: jnp.asarray(v) for p, v in flat.items()}))
  return model


def exported(model: llamo_lib.LLaMo) -> torch_model.LLaMo:
  t = torch_model.LLaMo(torch_model.LLaMoConfig.from_dict(torch_export.llamo_config_dict(model.config)))
  t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in torch_export.llamo_tensors(model).items()})
  return t


def _fmt(times):
  return f"{statistics.median(times) * 1e3:.0f} ({min(times) * 1e3:.0f}-{max(times) * 1e3:.0f})"


def train_step(model, tm, b, t):
  """(jax step, torch step) closures of the forward+backward on one T2M-like batch."""
  cfg = model.config
  n_motion = t // 2
  modality = np.zeros((b, t), np.int32)
  modality[:, 8:8 + n_motion] = 1
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.llama.vocab_size, (b, t)).astype(np.int32)
  latents = rng.normal(size=(b, t, cfg.latent_dim)).astype(np.float32) * modality[..., None]
  x = rng.normal(size=(b, t, cfg.latent_dim)).astype(np.float32)
  tt = rng.uniform(size=(b, t)).astype(np.float32)
  model.text_capacity, model.motion_capacity = t - n_motion, n_motion
  graphdef, params = nnx.split(model)

  def loss_fn(params, tokens, latents, modality, x, tt):
    m = nnx.merge(graphdef, params)
    _, h, _ = m(tokens, latents, modality)
    return jnp.mean(jnp.square(h)) + jnp.mean(jnp.square(m.flow_head(x, tt, h)))

  args = tuple(map(jnp.asarray, (tokens, latents, modality, x, tt)))
  step = jax.jit(jax.value_and_grad(loss_fn)).lower(params, *args).compile()
  targs = (torch.from_numpy(tokens).long(), torch.from_numpy(latents), torch.from_numpy(modality).long(),
           torch.from_numpy(x), torch.from_numpy(tt))

  def torch_step():
    tm.zero_grad(set_to_none=True)
    _, h, _ = tm(*targs[:3])
    loss = h.pow(2).mean() + tm.flow_head(targs[3], targs[4], h).pow(2).mean()
    loss.backward()

  return lambda: jax.block_until_ready(step(params, *args)), torch_step


def main(argv):
  del argv
  if len(_LAYERS.value) != len(_PRESETS.value):
    raise app.UsageError("--layers needs one entry per --presets entry.")
  torch.manual_seed(0)
  b, t = (int(v) for v in _SHAPE.value.split("x"))
  rows = []
  for name, layers in zip(_PRESETS.value, _LAYERS.value):
    llama = dataclasses.replace(presets.get_preset(name), n_layers=int(layers))
    cfg = llamo_lib.LLaMoConfig(llama=llama, latent_dim=32, flow_width=_FLOW_WIDTH.value, flow_depth=3)
    model = random_llamo(cfg)
    tm = exported(model)
    jax_step, torch_step = train_step(model, tm, b, t)
    for fn in (jax_step, torch_step):
      fn()
    tj, tt = [], []
    for _ in range(_STEPS.value):
      for fn, out in ((jax_step, tj), (torch_step, tt)):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    ratio = statistics.median(tt) / statistics.median(tj)
    rows.append(f"| {name} (L={layers}) | forward+backward {b}x{t} | {_fmt(tj)} ms | {_fmt(tt)} ms "
                f"| {ratio:.2f}x |")
    print(rows[-1], flush=True)
    llamo_lib.for_inference(model)
    tm.eval()
    for batch in (int(x) for x in _BATCHES.value):
      prompts = [np.concatenate([np.arange(1, 24) + i, [llamo_lib.bom_id(cfg)]]).astype(np.int32)
                 for i in range(batch)]
      kw = dict(max_latents=_LATENTS.value, cfg_scale=4.0, flow_steps=_FLOW_STEPS.value, method="euler",
                exit_threshold=1.0)
      jax_gen = lambda: jax.block_until_ready(text_to_motion.generate_motion(
          model, prompts, jax.random.key(0), **kw))
      torch_gen = lambda: torch_sampling.generate_motion(tm, [p.tolist() for p in prompts], **kw)
      for fn in (jax_gen, torch_gen):
        fn()
      gj, gt = [], []
      for _ in range(_REPEATS.value):
        for fn, out in ((jax_gen, gj), (torch_gen, gt)):
          start = time.perf_counter()
          fn()
          out.append(time.perf_counter() - start)
      frames = 4 * _LATENTS.value * batch
      fj, ft = frames / statistics.median(gj), frames / statistics.median(gt)
      rows.append(f"| {name} (L={layers}) | generation, batch {batch} | {fj:.1f} frames/s "
                  f"({fj / batch:.1f} per stream) | {ft:.1f} frames/s ({ft / batch:.1f} per stream) "
                  f"| {fj / ft:.2f}x |")
      print(rows[-1], flush=True)
  intro = (f"`python bench/bench_torch_export.py --presets={','.join(_PRESETS.value)} "
           f"--layers={','.join(_LAYERS.value)} --shape={_SHAPE.value} --steps={_STEPS.value} "
           f"--batches={','.join(_BATCHES.value)} --latents={_LATENTS.value} --flow_steps={_FLOW_STEPS.value} "
           f"--flow_width={_FLOW_WIDTH.value}`: the same random weights in JAX (jax {jax.__version__}, jitted) "
           f"and in the PyTorch export (torch {torch.__version__}, eager, {torch.get_num_threads()} threads), "
           "fp32, measured alternately in one process. Forward+backward: loss = mean(h^2) + "
           "mean(flow_head(x,t,h)^2) over a sequence half motion tokens, gradient w.r.t. every param; "
           "milliseconds median (min-max). Generation: text to motion latents (no VAE), Euler with CFG "
           "w=4, every sequence runs all latents; JAX = the fused `generate_motion` loop. Ratio = "
           "PyTorch time / JAX time (> 1: JAX faster). The machine's 2 cores were shared with other "
           "jobs (load below): the ratios, measured side by side, mean more than the absolute numbers.")
  benchmarks_md.publish("bench_torch_export", "LLaMo in JAX vs its PyTorch export (bench/bench_torch_export.py)",
                        intro, ["model", "what", "JAX", "PyTorch export", "ratio"], rows, write=_WRITE.value)


if __name__ == "__main__":
  app.run(main)
