"""Text to motion and motion to text with a trained LLaMo run.

  python -m llamo_jax.sample --workdir=workdirs/demo/llamo --prompt="a person jumps." [--prompt=...]
  python -m llamo_jax.sample --workdir=workdirs/demo/llamo --motion=clip.npy   # or .bvh: caption it
  python -m llamo_jax.sample --workdir=... --prompt="..." --stream            # print frames as they come

The run's config is read from WORKDIR/config.json. Text to motion writes, per prompt,
OUT/t2m_I.npy (joints [T,22,3]), OUT/t2m_I_features.npy (the VAE's representation,
denormalised), OUT/t2m_I.gif (or .mp4) and OUT/t2m_I.bvh; captions go to
OUT/captions.json. OUT defaults to WORKDIR/samples/cli_stepN. WORKDIR, OUT and the
--motion file may be local or gs:// (any etils.epath path).
"""
from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app
from absl import flags
from etils import epath

from llamo_jax import tasks
from llamo_jax.core import paths
from llamo_jax.data import sequences
from llamo_jax.generation import streaming
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.motion import files as motion_files
from llamo_jax.motion import stick_figure
from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.training import runs


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share flag names)."""
  flags.DEFINE_string("workdir", None, "A LLaMo training workdir (config.json + checkpoints).")
  flags.DEFINE_multi_string("prompt", [], "Text prompt(s) to turn into motion.")
  flags.DEFINE_string("motion", None, "A motion file (.npy joints/features or .bvh) to caption.")
  flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/samples/cli_stepN).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_enum("weights", "ema", runs.WEIGHTS, "ema: the run's weight EMA where it keeps one (config.ema_decay), "
                    "else its trained weights; trained: the trained weights.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_integer("max_latents", None, "Most latents (4 frames each); default: config.sampling.")
  flags.DEFINE_float("cfg_scale", None, "Classifier-free guidance weight; default: config.sampling.")
  flags.DEFINE_integer("flow_steps", None, "ODE steps of the flow head; default: config.sampling.")
  flags.DEFINE_float("temperature", None, "Initial noise scale; default: config.sampling.")
  flags.DEFINE_enum("flow_dtype", None, flow_lib.COMPUTE_DTYPES, "Matmul dtype of the flow ODE (bfloat16: faster on "
                    "CPUs and accelerators with bf16 units); default: config.sampling.")
  flags.DEFINE_enum("backbone_dtype", None, flow_lib.COMPUTE_DTYPES, "Matmul dtype of the backbone's "
                    "projections in sampling (bfloat16: a faster prefill); default: config.sampling.")
  flags.DEFINE_bool("stream", False, "Generate the first prompt streaming and report per-latent latency.")
  flags.DEFINE_enum("render_format", "gif", ["gif", "mp4", "none"], "Animation format.")
  flags.mark_flags_as_required(["workdir"])


def text_to_motion(task, model, prompts, out: paths.PathLike, *, seed: int, render_format: str,
                   **overrides) -> list[dict]:
  """Samples one motion per prompt and writes it into `out` (any epath; module docstring); returns a
  summary."""
  out = epath.Path(out)
  features, motions, lengths = task.sample_motions(model, list(prompts), jax.random.key(seed), **overrides)
  rep, summary = task.representation, []
  for i, (prompt, feats, joints) in enumerate(zip(prompts, features, motions)):
    paths.save_npy(out / f"t2m_{i}.npy", joints)
    paths.save_npy(out / f"t2m_{i}_features.npy", feats)
    bvh_format.write_bvh(out / f"t2m_{i}.bvh", motion_files.to_bvh(feats, rep.name, rep.fps))
    if render_format != "none":
      stick_figure.render_motion(joints, out / f"t2m_{i}.{render_format}", fps=rep.fps, caption=prompt)
    summary.append({"prompt": prompt, "frames": int(len(joints)), "latents": int(lengths[i]),
                    "file": str(out / f"t2m_{i}.npy")})
  return summary


def caption_file(task, model, path: paths.PathLike) -> str:
  """Encodes a motion file with the run's VAE and captions it greedily."""
  array, name, _ = motion_files.load_motion(path)
  rep = task.representation
  if name == "joints":
    array = rep.from_joints(array)
  elif name != rep.name:
    raise ValueError(f"{path} holds {name} features but the run's VAE encodes {rep.name}; pass joints "
                     f"[T,22,3], a .bvh, or {rep.name} features.")
  return task.caption_features(model, array)


def stream_first(task, model, prompt: str, *, seed: int, **overrides) -> dict:
  """Streams the first prompt's motion (config.sampling with the non-None `overrides`, e.g.
  flow_dtype); returns per-latent latency figures."""
  s = task.sampling_settings(**overrides)
  tokens = [sequences.t2m_prompt(task.tokenizer, prompt, task.bom)]
  times, start = [], time.perf_counter()
  for chunk in streaming.stream_motion(
      model, task.vae, tokens, jax.random.key(seed), latent_mean=task.latent_mean,
      latent_std=task.latent_std, max_latents=s["max_latents"], cfg_scale=s["cfg_scale"],
      flow_steps=s["flow_steps"], method=s["method"], temperature=s["temperature"],
      exit_threshold=s["exit_threshold"], flow_dtype=s["flow_dtype"],
      backbone_dtype=s["backbone_dtype"]):
    np.asarray(chunk.frames)  # wait for the frames (what a player would consume)
    now = time.perf_counter()
    times.append(now - start)
    start = now
  steady = times[2:] or times
  return {"prompt": prompt, "latents": len(times), "first_latent_s": times[0] if times else None,
          "median_ms_per_latent": 1e3 * float(np.median(steady)) if steady else None,
          "frames_per_s": 4.0 / float(np.median(steady)) if steady else None}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f.prompt and not f.motion:
    raise app.UsageError("Nothing to do: pass --prompt=TEXT (text to motion) and/or --motion=FILE (caption).")
  workdir = epath.Path(f.workdir)
  try:
    config = runs.load_run_config(workdir, task="llamo")
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  task, model, step = tasks.restore_for_eval(config, workdir, f.step, f.weights)
  model = llamo_lib.for_inference(model)
  out = epath.Path(f.out) if f.out else workdir / "samples" / f"cli_step{step}"
  out.mkdir(parents=True, exist_ok=True)
  result = {"step": step}
  if f.prompt:
    result["t2m"] = text_to_motion(task, model, f.prompt, out, seed=f.seed, render_format=f.render_format,
                                   max_latents=f.max_latents, cfg_scale=f.cfg_scale,
                                   flow_steps=f.flow_steps, temperature=f.temperature,
                                   flow_dtype=f.flow_dtype, backbone_dtype=f.backbone_dtype)
    if f.stream:
      result["stream"] = stream_first(task, model, f.prompt[0], seed=f.seed, flow_dtype=f.flow_dtype,
                                      backbone_dtype=f.backbone_dtype)
  if f.motion:
    result["caption"] = {"motion": f.motion, "caption": caption_file(task, model, f.motion)}
    (out / "captions.json").write_text(json.dumps(result["caption"], indent=1))
  print(json.dumps(result, indent=1))
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
