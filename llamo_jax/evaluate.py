"""Evaluates a trained model of a training workdir.

  python -m llamo_jax.evaluate --workdir=DIR [--config=...] [--split=test]
  python -m llamo_jax.evaluate --workdir=DIR --motion=clip.npy|clip.bvh
  python -m llamo_jax.evaluate --workdir=LLAMO_RUN --evaluator=E [--split=test]

--config defaults to the workdir's own config.json.

Split mode writes DIR/eval_{split}_step{N}.json (summary + per-clip metrics) and prints the
summary. Motion mode reconstructs one motion (joints [T,22,3] or features of the config's
representation in .npy, or a .bvh), prints its metrics and writes a side-by-side animation
(input left, reconstruction right; --render_format=gif|mp4) or a filmstrip (input above,
reconstruction below; png) next to the JSON.

LLaMo runs with --evaluator (an evaluator workdir or imported evaluator, see
tasks/evaluator.py): the field's protocol on the split's clips of the reference corpus (by
default the VAE run's corpus). LLaMo generates a motion for one caption of every clip
(seeded draw; with --regenerate again for every protocol repetition) and captions every
clip's motion; the VAE reconstructs every clip. Writes
DIR/eval_t2m.json (rows "Real motion", "VAE reconstruction", "LLaMo": T2M metrics of
eval/t2m_protocol.py, physical metrics, attribute accuracy on synthetic corpora, the
zero-shot split on its own), DIR/eval_m2t.json (BLEU, ROUGE-L, CIDEr, BERTScore with
--bertscore_model, every caption) and DIR/eval_table.md (eval/tables.py).

DIR, --motion, --evaluator and --reference may be local or gs:// (any etils.epath path).
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np
import tqdm
from absl import app
from absl import flags
from etils import epath
from ml_collections import config_flags

from llamo_jax import tasks
from llamo_jax.core import config_files
from llamo_jax.core import paths
from llamo_jax.core.errors import InputError
from llamo_jax.data import sources
from llamo_jax.eval import action_checks
from llamo_jax.eval import motion_metrics
from llamo_jax.eval import t2m_protocol
from llamo_jax.eval import tables
from llamo_jax.eval import text_metrics
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT
from llamo_jax.motion import files as motion_files
from llamo_jax.motion import stick_figure
from llamo_jax.motion.bvh import retarget
from llamo_jax.tasks import evaluator as evaluator_lib
from llamo_jax.training import runs

REFERENCE_MIN_LEN = 40  # frames; the released evaluation drops shorter real clips


def load_motion_joints(path: paths.PathLike, representation) -> np.ndarray:
  """Joint positions [T,22,3] at the representation's fps from a .npy (joints or its features) or .bvh."""
  path = epath.Path(path)
  array, name, fps = motion_files.load_motion(path)
  if path.suffix.lower() == ".bvh":
    return retarget.resample(array, fps, representation.fps)
  if name == "joints":
    return array
  if name != representation.name:
    raise ValueError(f"--motion={path} holds {name} features; this VAE reads joints [T,22,3] or "
                     f"{representation.name} features [T,{representation.dim}] (denormalised).")
  return np.asarray(representation.to_joints(array))


def evaluate_motion(task, model, path: paths.PathLike, out_dir: paths.PathLike, fmt: str) -> dict:
  """Reconstructs one motion file; writes the side-by-side animation into `out_dir`; returns its metrics."""
  path, out_dir = epath.Path(path), epath.Path(out_dir)
  rep = task.representation
  joints = load_motion_joints(path, rep)
  features = (np.asarray(rep.from_joints(joints), np.float32) - task.mean) / task.std
  if not np.all(np.isfinite(features)):
    raise ValueError(f"{path} gives non-finite features; check the file (NaN) or its units.")
  t = len(features) - len(features) % FRAMES_PER_LATENT
  preds, targets = task.reconstruct_joints(model, features[None, :t], np.array([t]))
  metrics = motion_metrics.reconstruction_metrics(preds[0], targets[0], rep.fps)
  rendered = out_dir / f"recon_{path.stem}.{fmt}"
  if fmt == "png":
    image = stick_figure.stacked_frames_image([targets[0], preds[0]], ["input", "reconstruction"])
    stick_figure.save_image(image, rendered)
  else:
    stick_figure.render_grid([targets[0], preds[0]], rendered, captions=["input", "reconstruction"],
                             fps=rep.fps)
  return dict(metrics, motion=str(path), frames=t, rendered=str(rendered))


def _batches(items: list, size: int, desc: str):
  """Chunks of `items` of `size`, with a progress bar."""
  starts = range(0, len(items), size)
  for start in tqdm.tqdm(starts, desc=desc, unit="batch", leave=False):
    yield start, items[start:start + size]


def generate(task, model, prompts: list[str], key: jax.Array, batch_size: int, desc: str,
             prefix: tuple[np.ndarray, np.ndarray] | None = None, **overrides) -> list[np.ndarray]:
  """LLaMo motions (raw features) for prompts, in batches of `batch_size` (the last one padded, so one
  compiled shape serves every batch of the same prompt length). `prefix`: (latents [N,K,C], lengths [N])
  each motion continues (`task.encode_latents`)."""
  out = []
  for start, chunk in _batches(prompts, batch_size, desc):
    padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
    if prefix is not None:
      rows = [min(i, len(prompts) - 1) for i in range(start, start + batch_size)]
      overrides.update(prefix_latents=prefix[0][rows], prefix_lengths=prefix[1][rows])
    features, _, _ = task.sample_motions(model, padded, jax.random.fold_in(key, start), **overrides)
    out += [np.asarray(f, np.float32) for f in features[:len(chunk)]]
  return out


def _continuations(values: list[str]) -> list[int]:
  """--continuations as latent counts; one clear error for anything else."""
  try:
    counts = [int(v) for v in values]
  except ValueError:
    counts = [0]
  if any(k < 1 for k in counts):
    raise ValueError(f"--continuations={','.join(values)}: give positive latent counts, e.g. --continuations=1,3.")
  return counts


def _physical(clips, rep, fps):
  joints = [np.asarray(rep.to_joints(c.features)) for c in clips if len(c.features) >= 4]
  return motion_metrics.mean_physical_metrics(joints, fps)


def evaluate_llamo(task, model, step: int, workdir: paths.PathLike, evaluator, f) -> dict:
  """The LLaMo run's T2M / M2T evaluation (module docstring); writes the three files, returns the table."""
  workdir = epath.Path(workdir)
  rep = task.representation
  if evaluator.representation != rep.name:
    raise ValueError(f"--evaluator={f.evaluator} reads {evaluator.representation} features, but this LLaMo's "
                     f"VAE produces {rep.name}: use an evaluator trained on {rep.name} "
                     f"(configs/evaluator.py:...,rep={rep.name}).")
  reference = f.reference or task.vae_config.data.get("corpus", {}).get("dir", "")
  if not reference:
    raise ValueError("The VAE run names no corpus folder (data.corpus.dir): pass --reference=DIR.")
  skips = t2m_protocol.Skips()
  clips = t2m_protocol.read_folder(reference, rep.name, f.split, skips, min_len=REFERENCE_MIN_LEN)
  clips = t2m_protocol.select_clips(clips, evaluator, f.crop, skips, "reference")[:f.max_clips]
  fps = sources.HumanML3DSource(reference, rep.name).fps
  rng = np.random.default_rng(f.seed)
  key = jax.random.key(f.seed)
  inference = llamo_lib.for_inference(model)
  overrides = dict(max_latents=f.max_latents or evaluator.max_motion_length // FRAMES_PER_LATENT,
                   cfg_scale=f.cfg_scale, flow_steps=f.flow_steps, exit_threshold=f.exit_threshold,
                   temperature=f.temperature,
                   flow_dtype=f.flow_dtype, backbone_dtype=f.backbone_dtype,
                   start_cfg_scale=f.start_cfg_scale, start_latents=f.start_latents)

  # Text to motion: one seeded caption per clip; MultiModality on a seeded subset of prompts.
  prompts = [c.captions[int(rng.integers(len(c.captions)))] for c in clips]

  def generate_set(k: jax.Array, desc: str) -> list[t2m_protocol.EvalClip]:
    motions = generate(task, inference, prompts, k, f.batch_size, desc, **overrides)
    return [t2m_protocol.EvalClip(c.clip_id, m, (p,), c.attributes) for c, p, m in zip(clips, prompts, motions)]

  generated = generate_set(key, "LLaMo text to motion")
  recon = []
  for _, chunk in _batches(clips, f.batch_size, "VAE reconstruction"):
    recon += task.vae_task.reconstruct_features(task.vae, [c.features for c in chunk])
  reconstructed = [t2m_protocol.EvalClip(c.clip_id, r, c.captions) for c, r in zip(clips, recon)]
  multimodal = None
  if f.mm_prompts and f.mm_samples:
    chosen = rng.choice(len(prompts), min(f.mm_prompts, len(prompts)), replace=False)
    mm_prompts = [prompts[i] for i in chosen for _ in range(f.mm_samples)]
    mm = generate(task, inference, mm_prompts, jax.random.fold_in(key, 1), f.batch_size,
                  "LLaMo MultiModality samples", **overrides)
    multimodal = [mm[i:i + f.mm_samples] for i in range(0, len(mm), f.mm_samples)]
  protocol = dict(num_repeats=f.num_repeats, crop=f.crop, seed=f.seed)
  regenerate = (lambda repeat: generate_set(jax.random.fold_in(key, 1000 + repeat),
                                            f"LLaMo text to motion, repeat {repeat + 1}")) if f.regenerate else None

  rows = {"Real motion": t2m_protocol.evaluate_t2m(evaluator, clips, label="Real motion", **protocol),
          "VAE reconstruction": t2m_protocol.evaluate_t2m(evaluator, clips, reconstructed,
                                                          label="VAE reconstruction", **protocol),
          "LLaMo": t2m_protocol.evaluate_t2m(evaluator, clips, generated, multimodal=multimodal, label="LLaMo",
                                             regenerate=regenerate, **protocol)}
  t2m_out = {"step": step, "split": f.split, "reference": str(reference), "evaluator": f.evaluator,
             "evaluator_step": getattr(evaluator, "step", None),
             "generation": overrides, "skipped_reference": skips.to_dict(), "rows": {}}
  for name, clip_set in (("Real motion", clips), ("VAE reconstruction", reconstructed), ("LLaMo", generated)):
    metrics = rows[name]
    entry = {"t2m": {k: v for k, v in metrics.items() if k != "protocol"}, "protocol": metrics["protocol"],
             "physical": _physical(clip_set, rep, fps)}
    attrs = action_checks.attribute_accuracy([np.asarray(rep.to_joints(c.features)) for c in clip_set],
                                             [c.attributes for c in clips], fps)
    if attrs:
      entry["attributes"] = {f.split: attrs}
    entry["length"] = action_checks.length_agreement([len(c.features) for c in clip_set],
                                                     [len(c.features) for c in clips])
    t2m_out["rows"][name] = entry

  # Where the text is lost: the same prompts, each motion continuing its clip's first K real latents.
  for given in _continuations(f.continuations):
    prefix = task.encode_latents([c.features for c in clips], given)
    motions = generate(task, inference, prompts, key, f.batch_size, f"LLaMo after {given} real latents",
                       prefix=prefix, **overrides)
    attrs = action_checks.attribute_accuracy([np.asarray(rep.to_joints(m)) for m in motions],
                                             [c.attributes for c in clips], fps)
    if attrs:
      t2m_out["rows"]["LLaMo"].setdefault("continuations", {})[str(given)] = {
          "attributes": {f.split: attrs},
          "length": action_checks.length_agreement([len(m) for m in motions], [len(c.features) for c in clips])}

  # The zero-shot split (held-out combinations of the synthetic corpus): attribute accuracy on its own.
  zs_ids = sources.HumanML3DSource(reference, rep.name).split_ids("zeroshot") \
      if (epath.Path(reference) / "zeroshot.txt").is_file() else []
  if zs_ids and f.split != "zeroshot":
    zs = t2m_protocol.read_folder(reference, rep.name, "zeroshot", t2m_protocol.Skips(), min_len=REFERENCE_MIN_LEN,
                                  ids=zs_ids)[:f.max_clips]
    if zs:
      zs_motions = generate(task, inference, [c.captions[0] for c in zs], jax.random.fold_in(key, 2),
                            f.batch_size, "LLaMo zero-shot split", **overrides)
      attrs = action_checks.attribute_accuracy([np.asarray(rep.to_joints(m)) for m in zs_motions],
                                               [c.attributes for c in zs], fps)
      if attrs:
        t2m_out["rows"]["LLaMo"].setdefault("attributes", {})["zeroshot"] = attrs

  # Motion to text.
  captions = []
  for _, chunk in _batches(clips, f.batch_size, "LLaMo captioning"):
    captions += task.caption_motions(inference, [c.features for c in chunk], max_new_tokens=f.max_caption_tokens)
  m2t = text_metrics.m2t_metrics(captions, [list(c.captions) for c in clips], f.bertscore_model)
  recall = action_checks.caption_recall([action_checks.named_actions(g, c.attributes)
                                         for g, c in zip(captions, clips) if c.attributes])
  if recall:
    m2t["action_recall"] = recall
  m2t_out = {"step": step, "split": f.split, "rows": {"LLaMo": {"m2t": m2t}},
             "normalisation": text_metrics.normalize_caption.__doc__,
             "not_computed": {} if "bertscore" in m2t else {"bertscore": "no --bertscore_model given"},
             "captions": [{"clip_id": c.clip_id, "generated": g, "references": list(c.captions)}
                          for c, g in zip(clips, captions)]}
  table = (f"T2M, {f.split} split, {len(clips)} clips, {f.num_repeats} repeats, crop={f.crop}, "
           f"evaluator {f.evaluator} (step {t2m_out['evaluator_step']})\n\n" +
           tables.t2m_table({k: v["t2m"] for k, v in t2m_out["rows"].items()}) +
           f"\nM2T, {len(clips)} clips (x100)\n\n" + tables.m2t_table({"LLaMo": m2t}))
  if any("attributes" in row for row in t2m_out["rows"].values()):
    continued = {f"LLaMo after {k} real latents": v
                 for k, v in t2m_out["rows"]["LLaMo"].get("continuations", {}).items()}
    table += ("\nAgreement with the text (eval/action_checks.py; percent, per action: accuracy (segments))\n\n" +
              tables.agreement_table({**t2m_out["rows"], **continued}))
  if recall:
    table += (f"\nCaptions name {100 * recall['actions']:.1f}% of the clips' {recall['num_actions']} actions and "
              f"the first action of {100 * recall['first_action']:.1f}% of {recall['num_clips']} clips.\n")
  (workdir / "eval_t2m.json").write_text(json.dumps(t2m_out, indent=2))
  (workdir / "eval_m2t.json").write_text(json.dumps(m2t_out, indent=2))
  (workdir / "eval_table.md").write_text(table)
  return {"table": table}


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share flag names)."""
  config_flags.DEFINE_config_file("config", None, "The training config of the workdir (default: its config.json).")
  flags.DEFINE_string("workdir", None, "Training workdir with checkpoints.")
  flags.DEFINE_string("split", "test", "Split to evaluate.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  flags.DEFINE_enum("weights", "ema", runs.WEIGHTS, "ema: the run's weight EMA where it keeps one (config.ema_decay), "
                    "else its trained weights; trained: the trained weights.")
  flags.DEFINE_integer("max_len", 196, "Frames per clip evaluated (longer clips are cropped).")
  flags.DEFINE_integer("max_batches", None, "Stop after this many batches (default: all).")
  flags.DEFINE_string("motion", None, "Reconstruct this one motion file (.npy or .bvh) instead.")
  flags.DEFINE_enum("render_format", "gif", ["gif", "mp4", "png"],
                    "--motion mode: an animation (gif, mp4) or a filmstrip (png).")
  # LLaMo runs with a text-motion evaluator.
  flags.DEFINE_string("evaluator", None, "LLaMo runs: the evaluator (workdir or imported dir) for T2M/M2T metrics.")
  flags.DEFINE_string("reference", None, "Reference corpus folder (default: the VAE run's data.corpus.dir).")
  flags.DEFINE_enum("crop", "protocol", list(t2m_protocol.CROPS), "Motion crop of the T2M protocol.")
  flags.DEFINE_integer("num_repeats", 20, "T2M protocol repetitions.")
  flags.DEFINE_bool("regenerate", False, "LLaMo runs: generate afresh for every repetition, as the released "
                    "protocol does (num_repeats generations); default: one generation, redrawn crops and batches.")
  flags.DEFINE_integer("seed", 0, "Seed of the caption draws, generation and protocol.")
  flags.DEFINE_integer("batch_size", 32, "Clips per generation / captioning batch.")
  flags.DEFINE_integer("max_clips", None, "Evaluate only the first N clips of the split (default: all).")
  flags.DEFINE_integer("max_latents", None, "Most latents per generated motion (default: the evaluator's "
                       "max_motion_length / 4, 49).")
  flags.DEFINE_float("cfg_scale", None, "Guidance scale (default: the run's config.sampling).")
  flags.DEFINE_float("start_cfg_scale", None, "Guidance scale of the first --start_latents latents (give "
                     "both; default: --cfg_scale throughout).")
  flags.DEFINE_integer("start_latents", None, "Latents sampled with --start_cfg_scale.")
  flags.DEFINE_float("exit_threshold", None, "Exit-head probability that ends a motion (default: the run's "
                     "config.sampling).")
  flags.DEFINE_integer("flow_steps", None, "Flow ODE steps (default: the run's config.sampling).")
  flags.DEFINE_float("temperature", None, "Scale of the noise each latent's ODE starts from (default: the "
                     "run's config.sampling).")
  flags.DEFINE_enum("flow_dtype", None, flow_lib.COMPUTE_DTYPES, "Matmul dtype of the flow ODE (default: the "
                    "run's config.sampling).")
  flags.DEFINE_enum("backbone_dtype", None, flow_lib.COMPUTE_DTYPES, "Matmul dtype of the backbone's "
                    "projections (default: the run's config.sampling).")
  flags.DEFINE_list("continuations", [], "LLaMo runs on a synthetic corpus: attribute accuracy again with each "
                    "motion continuing its clip's first K real latents, for each K listed (e.g. 1,3): how much "
                    "of what is lost, is lost at the start.")
  flags.DEFINE_integer("mm_prompts", 100, "MultiModality prompts (0: not computed).")
  flags.DEFINE_integer("mm_samples", 30, "MultiModality samples per prompt.")
  flags.DEFINE_integer("max_caption_tokens", 40, "Most tokens per generated caption.")
  flags.DEFINE_string("bertscore_model", None, "Local model directory for BERTScore (default: not computed).")
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  workdir = epath.Path(f.workdir)
  try:
    config = f.config if f.config is not None else runs.load_run_config(workdir)
  except (InputError, FileNotFoundError) as e:
    sys.exit(f"evaluate: error: {e}")
  if f.evaluator:
    if config.get("task") != "llamo":
      sys.exit(f"evaluate: error: --evaluator evaluates LLaMo runs; {workdir} is a {config.get('task')!r} run.")
    try:
      evaluator = evaluator_lib.load_evaluator(f.evaluator)
      task, model, step = tasks.restore_for_eval(config, workdir, f.step, f.weights)
      result = evaluate_llamo(task, model, step, workdir, evaluator, f)
    except (InputError, ValueError, FileNotFoundError) as e:
      sys.exit(f"evaluate: error: {e}")
    print(result["table"])
    print(f"wrote {workdir / 'eval_t2m.json'}, {workdir / 'eval_m2t.json'}, {workdir / 'eval_table.md'}")
    return
  try:
    task, model, step = tasks.restore_for_eval(config, workdir, f.step, f.weights)
  except (InputError, FileNotFoundError) as e:
    sys.exit(f"evaluate: error: {e}")
  if not hasattr(task, "evaluate_split"):
    raise app.UsageError(f"llamo_jax.evaluate does not support task {config.task!r} without --evaluator.")
  if f.motion:
    result = evaluate_motion(task, model, f.motion, workdir, f.render_format)
    out = workdir / f"eval_motion_{epath.Path(f.motion).stem}_step{step}.json"
  else:
    summary, per_clip = task.evaluate_split(model, f.split, max_len=f.max_len,
                                            max_batches=f.max_batches)
    result = {"split": f.split, "step": step, "summary": summary, "clips": per_clip}
    out = workdir / f"eval_{f.split}_step{step}.json"
  out.write_text(json.dumps(result, indent=2))
  shown = result.get("summary", result)
  for key, value in shown.items():
    print(f"{key:>24s}  {value:.4g}" if isinstance(value, float) else f"{key:>24s}  {value}")
  print(f"wrote {out}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=config_files.parse_flags_with_config)
