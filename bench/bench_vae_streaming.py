"""Streaming VAE decode vs offline decode: latency per new latent (4 frames) and frames/s.

  python bench/bench_vae_streaming.py [--presets=tiny,paper] [--latents=49] [--batch=4]

Random weights (speed only). Streaming = `decode_step` per latent with the per-layer
convolution state carried (jitted once); offline = `decode` of all latents at once.
Prints a table and writes the bench_vae_streaming section of BENCHMARKS.md.
"""
import time

import jax
import numpy as np
from absl import app
from absl import flags
from flax import nnx

import benchmarks_md  # bench/benchmarks_md.py
from llamo_jax.models import motion_vae

_PRESETS = flags.DEFINE_list("presets", ["tiny", "paper"], "MotionVAE presets.")
_LATENTS = flags.DEFINE_integer("latents", 49, "Latents per clip (49 = 196 frames).")
_BATCH = flags.DEFINE_integer("batch", 4, "Clips decoded together.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (median).")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def main(argv):
  del argv
  rows = []
  for preset in _PRESETS.value:
    cfg = motion_vae.get_preset(preset)
    model = motion_vae.MotionVAE(cfg, rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(0), (_BATCH.value, _LATENTS.value, cfg.latent_dim))
    step = nnx.jit(lambda m, s, l: m.decode_step(s, l))
    offline = nnx.jit(lambda m, zz: m.decode(zz))
    offline(model, z).block_until_ready()
    state = model.init_decode_state(_BATCH.value)
    step(model, state, z[:, :1])[1].block_until_ready()
    stream_times, offline_times = [], []
    for _ in range(_REPEATS.value):
      state = model.init_decode_state(_BATCH.value)
      start = time.perf_counter()
      for k in range(_LATENTS.value):
        state, frames = step(model, state, z[:, k:k + 1])
      frames.block_until_ready()
      stream_times.append((time.perf_counter() - start) / _LATENTS.value)
      start = time.perf_counter()
      offline(model, z).block_until_ready()
      offline_times.append(time.perf_counter() - start)
    per_latent = float(np.median(stream_times))
    total_frames = _BATCH.value * _LATENTS.value * motion_vae.FRAMES_PER_LATENT
    rows.append(f"| {preset} (width {cfg.width}) | {_BATCH.value} | {1e3 * per_latent:.2f} | "
                f"{_BATCH.value * motion_vae.FRAMES_PER_LATENT / per_latent:,.0f} | "
                f"{total_frames / float(np.median(offline_times)):,.0f} |")
    print(rows[-1], flush=True)
  benchmarks_md.publish(
      "bench_vae_streaming", "Motion VAE: streaming decode (bench/bench_vae_streaming.py)",
      f"`python bench/bench_vae_streaming.py --presets={','.join(_PRESETS.value)} --latents={_LATENTS.value} "
      f"--batch={_BATCH.value}`: random weights, fp32, jax {jax.__version__} on {jax.devices()[0].platform}; "
      f"median of {_REPEATS.value}. Streaming: one `decode_step` (4 new frames per clip) per call with the "
      "convolution state carried; offline: one `decode` of all latents.",
      ["preset", "clips", "ms per latent (streaming)", "frames/s streaming", "frames/s offline"], rows,
      _WRITE.value)


if __name__ == "__main__":
  app.run(main)
