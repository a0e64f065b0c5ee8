"""Motion VAE training step time per preset and batch shape (what a training budget buys).

  python bench/bench_vae_train_step.py [--shapes=tiny:32x64,paper:32x196,paper:256x196] [--repeats=5]

PRESET is a configs/motion_vae.py preset (its model: tiny width 128, paper width 512).
Random weights and features (speed only): one jitted step = forward, the full loss
(reconstruction, root, KL-style, joints through features -> joints), backward, grad
clipping and AdamW, as the trainer runs it. Prints a table and writes the
bench_vae_train_step section of BENCHMARKS.md.
"""
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from flax import nnx

import benchmarks_md  # bench/benchmarks_md.py
from llamo_jax.core.config_files import sibling_config
from llamo_jax.models import motion_vae
from llamo_jax.models import vae_loss

_SHAPES = flags.DEFINE_list("shapes", ["tiny:32x64", "paper:32x196", "paper:256x196"],
                            "PRESET:BATCHxFRAMES entries.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps (median).")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def model_config(preset: str) -> motion_vae.MotionVAEConfig:
  """The model of configs/motion_vae.py:PRESET (hml263 input)."""
  config = sibling_config(os.path.join(os.path.dirname(__file__), "..", "configs", "_.py"), "motion_vae", preset)
  return motion_vae.MotionVAEConfig.from_dict({**config.model.to_dict(), "input_dim": 263})


def time_step(preset: str, batch: int, frames: int, repeats: int) -> float:
  """Median seconds of one jitted training step of `preset` on [batch, frames] features."""
  cfg = model_config(preset)
  model = motion_vae.MotionVAE(cfg, rngs=nnx.Rngs(0))
  dim = cfg.input_dim
  loss_fn = vae_loss.VAELoss(vae_loss.VAELossConfig(), np.zeros(dim, np.float32), np.full(dim, 0.1, np.float32))
  optimizer = nnx.Optimizer(model, optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4)),
                            wrt=nnx.Param)
  features = jax.random.normal(jax.random.key(0), (batch, frames, dim)) * 0.5
  mask = jnp.ones((batch, frames), bool)
  lengths = jnp.full((batch,), frames)

  @nnx.jit
  def step(model, optimizer, features, lengths, mask, key):
    def loss(model):
      return loss_fn(model(features, lengths=lengths, noise_key=key), features, mask)[0]
    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value

  args = (features, lengths, mask, jax.random.key(1))
  step(model, optimizer, *args).block_until_ready()  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step(model, optimizer, *args).block_until_ready()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(argv):
  del argv
  rows = []
  for entry in _SHAPES.value:
    try:
      preset, shape = entry.split(":")
      batch, frames = (int(v) for v in shape.split("x"))
    except ValueError as e:
      raise app.UsageError(f"--shapes entry {entry!r} is not PRESET:BATCHxFRAMES (e.g. tiny:32x64).") from e
    seconds = time_step(preset, batch, frames, _REPEATS.value)
    width = model_config(preset).width
    rows.append(f"| {preset} (width {width}) | {batch} x {frames} | {seconds:.3f} | {batch * frames / seconds:,.0f} |")
    print(rows[-1], flush=True)
  benchmarks_md.publish(
      "bench_vae_train_step", "Motion VAE: training step (bench/bench_vae_train_step.py)",
      f"`python bench/bench_vae_train_step.py --shapes={','.join(_SHAPES.value)} --repeats={_REPEATS.value}`: "
      f"random weights and features, fp32, jax {jax.__version__} on {jax.devices()[0].platform}; one jitted "
      "step (forward, the full loss with joints, backward, clipping, AdamW), median of the repeats.",
      ["preset", "batch x frames", "s per step", "frames/s"], rows, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
