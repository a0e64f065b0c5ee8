"""Text to motion and motion to text with a trained LLaMo run.

  python -m llamo_jax.sample --workdir=workdirs/demo/llamo --prompt="a person jumps." [--prompt=...]
  python -m llamo_jax.sample --workdir=workdirs/demo/llamo --motion=clip.npy   # or .bvh: caption it
  python -m llamo_jax.sample --workdir=... --prompt="..." --stream            # print frames as they come

The run's config is read from WORKDIR/config.json. Text to motion writes, per prompt,
OUT/t2m_I.npy (joints [T,22,3]), OUT/t2m_I_features.npy (the VAE's representation,
denormalised), OUT/t2m_I.gif (or .mp4) and OUT/t2m_I.bvh; captions go to
OUT/captions.json. OUT defaults to WORKDIR/samples/cli_stepN.
"""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app
from absl import flags


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share flag names)."""
  flags.DEFINE_string("workdir", None, "A LLaMo training workdir (config.json + checkpoints).")
  flags.DEFINE_multi_string("prompt", [], "Text prompt(s) to turn into motion.")
  flags.DEFINE_string("motion", None, "A motion file (.npy joints/features or .bvh) to caption.")
  flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/samples/cli_stepN).")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_integer("max_latents", None, "Most latents (4 frames each); default: config.sampling.")
  flags.DEFINE_float("cfg_scale", None, "Classifier-free guidance weight; default: config.sampling.")
  flags.DEFINE_integer("flow_steps", None, "ODE steps of the flow head; default: config.sampling.")
  flags.DEFINE_float("temperature", None, "Initial noise scale; default: config.sampling.")
  flags.DEFINE_bool("stream", False, "Generate the first prompt streaming and report per-latent latency.")
  flags.DEFINE_enum("render_format", "gif", ["gif", "mp4", "none"], "Animation format.")
  flags.mark_flags_as_required(["workdir"])


def text_to_motion(task, model, prompts, out: pathlib.Path, *, seed: int, render_format: str,
                   **overrides) -> list[dict]:
  """Samples one motion per prompt and writes it (see module docstring); returns a summary."""
  import jax  # pylint: disable=g-import-not-at-top
  from llamo_jax import generation  # pylint: disable=g-import-not-at-top
  from llamo_jax.data import sequences  # pylint: disable=g-import-not-at-top
  from llamo_jax import render as render_cli  # pylint: disable=g-import-not-at-top
  from llamo_jax.motion import bvh, render  # pylint: disable=g-import-not-at-top
  s = task.config.sampling.to_dict()
  s.update({k: v for k, v in overrides.items() if v is not None})
  tokens = [sequences.t2m_prompt(task.tokenizer, p, task.bom) for p in prompts]
  latents, lengths = generation.generate_motion(
      model, tokens, jax.random.key(seed), max_latents=s["max_latents"], cfg_scale=s["cfg_scale"],
      flow_steps=s["flow_steps"], method=s["method"], temperature=s["temperature"],
      exit_threshold=s["exit_threshold"])
  feats = generation.decode_latents(task.vae, np.asarray(latents), np.asarray(lengths),
                                    task.latent_mean, task.latent_std)
  rep, summary = task.representation, []
  for i, (prompt, f) in enumerate(zip(prompts, feats)):
    features = f * task.vae_task.std + task.vae_task.mean
    joints = np.asarray(rep.to_joints(features))
    np.save(out / f"t2m_{i}.npy", joints)
    np.save(out / f"t2m_{i}_features.npy", features)
    bvh.write_bvh(out / f"t2m_{i}.bvh", render_cli.to_bvh(features, rep.name, rep.fps))
    if render_format != "none":
      render.render_motion(joints, out / f"t2m_{i}.{render_format}", fps=rep.fps, caption=prompt)
    summary.append({"prompt": prompt, "frames": int(len(joints)), "latents": int(lengths[i]),
                    "file": str(out / f"t2m_{i}.npy")})
  return summary


def caption_file(task, model, path: pathlib.Path) -> str:
  """Encodes a motion file with the run's VAE and captions it greedily."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from llamo_jax import generation  # pylint: disable=g-import-not-at-top
  from llamo_jax import render as render_cli  # pylint: disable=g-import-not-at-top
  from llamo_jax.data import sequences  # pylint: disable=g-import-not-at-top
  array, name, _ = render_cli.load_motion(path)
  rep = task.representation
  if name == "joints":
    array = rep.from_joints(array)
  elif name != rep.name:
    raise ValueError(f"{path} holds {name} features but the run's VAE encodes {rep.name}; pass joints "
                     f"[T,22,3], a .bvh, or {rep.name} features.")
  feats = (np.asarray(array, np.float32) - task.vae_task.mean) / task.vae_task.std
  z = np.asarray(task.vae.encode(jnp.asarray(feats[None])))[0]
  z = (z - task.latent_mean) / task.latent_std
  ids = generation.caption_motion(model, z[None], np.array([len(z)], np.int32),
                                  sequences.m2t_prompt(task.tokenizer, task.bom),
                                  eos_id=task.tokenizer.eos_id,
                                  max_new_tokens=int(task.config.sampling.max_caption_tokens))
  return task.tokenizer.decode(ids[0])


def stream_first(task, model, prompt: str, *, seed: int) -> dict:
  """Streams the first prompt's motion; returns per-latent latency figures."""
  import jax  # pylint: disable=g-import-not-at-top
  from llamo_jax import generation  # pylint: disable=g-import-not-at-top
  from llamo_jax.data import sequences  # pylint: disable=g-import-not-at-top
  s = task.config.sampling
  tokens = [sequences.t2m_prompt(task.tokenizer, prompt, task.bom)]
  times, start = [], time.perf_counter()
  for chunk in generation.stream_motion(
      model, task.vae, tokens, jax.random.key(seed), latent_mean=task.latent_mean,
      latent_std=task.latent_std, max_latents=s.max_latents, cfg_scale=s.cfg_scale, flow_steps=s.flow_steps, method=s.method,
      temperature=s.temperature, exit_threshold=s.exit_threshold):
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
  from llamo_jax import trainer  # pylint: disable=g-import-not-at-top
  from llamo_jax.tasks.llamo import load_run_config  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(f.workdir)
  config = load_run_config(workdir)
  if config.get("task") != "llamo":
    raise app.UsageError(f"{workdir} is a {config.get('task')!r} run; llamo_jax.sample needs a LLaMo run.")
  from llamo_jax.models import llamo as llamo_lib  # pylint: disable=g-import-not-at-top
  task, model, step = trainer.restore_for_eval(config, workdir, f.step)
  model = llamo_lib.for_inference(model)
  out = pathlib.Path(f.out) if f.out else workdir / "samples" / f"cli_step{step}"
  out.mkdir(parents=True, exist_ok=True)
  result = {"step": step}
  if f.prompt:
    result["t2m"] = text_to_motion(task, model, f.prompt, out, seed=f.seed, render_format=f.render_format,
                                   max_latents=f.max_latents, cfg_scale=f.cfg_scale,
                                   flow_steps=f.flow_steps, temperature=f.temperature)
    if f.stream:
      result["stream"] = stream_first(task, model, f.prompt[0], seed=f.seed)
  if f.motion:
    result["caption"] = {"motion": f.motion, "caption": caption_file(task, model, pathlib.Path(f.motion))}
    (out / "captions.json").write_text(json.dumps(result["caption"], indent=1))
  print(json.dumps(result, indent=1))
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
