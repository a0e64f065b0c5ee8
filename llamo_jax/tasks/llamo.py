"""LLaMo's staged training from a pretrained LLM and a trained motion VAE (docs/design.md, Staged recipe).

Config keys (see configs/llamo.py):
  base.pretrained    pretrained LLM dir (`python -m llamo_jax.import_llm`); if absent and
                     base.lm_workdir is set, that LM run's latest checkpoint is exported there
  vae.workdir        a trained motion VAE run (its config.json and latest checkpoint)
  model              LLaMoConfig fields (latent_dim 0 = the VAE's) and `llama` run-time
                     overrides of the pretrained config (dtype, scan_layers, remat_policy, ...)
  data               latents (latent records; default VAE_WORKDIR/latents/NAME, encoded on first
                     use), mirror (encode the VAE run's records with every train clip's left/right
                     mirror added, built on first use as NAME_mirror; the VAE is not retrained),
                     seq_len, batch_size (global), max_motion_tokens, static_speed
  stage_order, stages.NAME {steps, trainable (default NAME: align|joint|anneal), mix
                     {t2m, m2t, text weights}, drop_static, optimizer overrides}
  sampling           prompts, num_captions, max_latents, flow_steps, method, flow_dtype,
                     backbone_dtype (float32 | bfloat16: the matmuls of the flow ODE, of the
                     backbone), cfg_scale, temperature,
                     exit_threshold, max_caption_tokens
  eval_batches       held-out batches per task for the eval losses
  t2m_eval           optional {evaluator (an evaluator workdir or imported dir), clips (64), split
                     ("val"), reference (default: the VAE run's corpus)}: each evaluation also
                     logs a one-pass R-precision top-1..3 and FID of generated motions (whole
                     clips, first captions) as eval/t2m_rprecision_topK and eval/t2m_fid
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from llamo_jax.convert import pretrained
from llamo_jax.core import paths
from llamo_jax.data import prepare
from llamo_jax.data import records
from llamo_jax.data import sequences
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.eval import action_checks
from llamo_jax.eval import t2m_protocol
from llamo_jax.generation import captioning
from llamo_jax.generation import decode
from llamo_jax.generation import text_to_motion
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.models.motion_vae import FRAMES_PER_LATENT
from llamo_jax.tasks import evaluator as evaluator_lib
from llamo_jax.models import motion_vae as motion_vae_lib
from llamo_jax.models import presets
from llamo_jax.tasks import latents as latents_lib
from llamo_jax.tasks import lm
from llamo_jax.tasks import motion_vae
from llamo_jax.training import runs
from llamo_jax.training import task as task_lib

# Held-out loss terms per task and the names they are logged under (eval/NAME).
EVAL_TERMS = {"t2m": {"flow_loss": "t2m_flow_loss", "exit_loss": "t2m_exit_loss"},
              "m2t": {"text_loss": "m2t_text_loss"},
              "text": {"text_loss": "text_only_loss"}}


def export_lm_workdir(lm_workdir: str, out_dir: str) -> None:
  """Writes the latest checkpoint of an LM run (task "lm") as a pretrained dir."""
  lm_config = runs.load_run_config(lm_workdir, task="lm")
  task, model, step = runs.restore(lm_config, lm_workdir, lm.LanguageModelTask)
  pretrained.save_pretrained(out_dir, task.model_config, model, task.tokenizer,
                             source=f"{lm_workdir} step {step}")
  logging.info("exported LM %s (step %d) to %s", lm_workdir, step, out_dir)


class LLaMoTask(task_lib.Task):
  """MoT LLaMo on text-to-motion, motion-to-text and text-only sequences, in stages."""

  # ------------------------------------------------------------------ setup

  def prepare(self) -> None:
    cfg = self.config
    if cfg.get("sampling", None):  # before any training, not at the first evaluation
      action_checks.check_expectations(list(cfg.sampling.prompts),
                                       list(cfg.sampling.get("expect", ())))
    if cfg.get("t2m_eval", {}).get("evaluator", "") and int(cfg.t2m_eval.get("clips", 64)) < 32:
      raise ValueError(f"config.t2m_eval.clips={cfg.t2m_eval.clips}: R-precision ranks among 32 clips; use >= 32.")
    pretrained_dir = cfg.base.pretrained
    if not pretrained_dir:
      raise ValueError("config.base.pretrained is empty: point it at a pretrained dir "
                       "(python -m llamo_jax.import_llm) or set base.lm_workdir to export one there.")
    missing = not pretrained.is_pretrained_dir(pretrained_dir)
    multihost_utils.sync_global_devices("llamo_base_check")
    if missing:
      if not cfg.base.get("lm_workdir", ""):
        raise FileNotFoundError(f"config.base.pretrained={pretrained_dir} is not a pretrained dir; create it "
                                "with `python -m llamo_jax.import_llm` or set config.base.lm_workdir.")
      try:
        export_lm_workdir(cfg.base.lm_workdir, pretrained_dir)
      except pretrained.PretrainedDirError:
        if not pretrained.is_pretrained_dir(pretrained_dir):
          raise
        # Another run from the same LM (a sweep's points start together) wrote it first.
        logging.info("%s was exported by another run meanwhile; using it", pretrained_dir)

    # The motion VAE: restored for encoding latents and decoding samples.
    self.vae_config = runs.load_run_config(cfg.vae.workdir, task="motion_vae")
    self.vae_task, self.vae, vae_step = runs.restore(self.vae_config, cfg.vae.workdir, motion_vae.MotionVAETask)
    logging.info("motion VAE %s at step %d", cfg.vae.workdir, vae_step)
    self.representation = self.vae_task.representation
    latents_dir = epath.Path(self.latents_path)
    data_path = self._motion_records()  # every process: building mirrored records syncs them
    if jax.process_index() == 0 and not (latents_dir / records.META_FILE).exists():
      latents_lib.encode_dataset(self.vae_task, self.vae, data_path, latents_dir.parent, latents_dir.name)
      logging.info("encoded %s into latent records %s", data_path, latents_dir)
    multihost_utils.sync_global_devices("llamo_latents")
    latents = records.open_dataset(latents_dir)
    self.latent_mean, self.latent_std = latents.mean, latents.std

    self.model_config = self._model_config(pretrained.read_config(pretrained_dir), self.vae.cfg.latent_dim)
    if self.model_config.latent_dim != latents.dim:
      raise ValueError(f"config.model.latent_dim={self.model_config.latent_dim} but the latents at "
                       f"{latents_dir} are {latents.dim}-dim; set it to 0 to use the VAE's.")
    self.tokenizer = Tokenizer.load(epath.Path(pretrained_dir) / pretrained.TOKENIZER_DIR)
    self.bom, self.eom = llamo_lib.bom_id(self.model_config), llamo_lib.eom_id(self.model_config)

  def _model_config(self, base: Any, vae_latent_dim: int) -> llamo_lib.LLaMoConfig:
    """config.model over the base LLM's LlamaConfig (run-time overrides from config.model.llama);
    latent_dim 0 = the VAE's."""
    cfg = self.config
    llama = dict(base.to_dict(), **cfg.model.get("llama", ml_collections.ConfigDict()).to_dict())
    model = {k: v for k, v in cfg.model.to_dict().items() if k != "llama"}
    model["latent_dim"] = model.get("latent_dim") or vae_latent_dim
    return llamo_lib.LLaMoConfig.from_dict(dict(model, llama=llama))

  def prepare_shapes(self) -> None:
    """Model shapes without weights or data: the base from config.base.pretrained when it is a
    pretrained dir, else the preset config.base.preset; latent_dim 0 = the VAE run's
    (config.vae.workdir) when it exists, else the VAE preset's default."""
    cfg = self.config
    if cfg.base.pretrained and pretrained.is_pretrained_dir(cfg.base.pretrained):
      base = pretrained.read_config(cfg.base.pretrained)
    elif cfg.base.get("preset", ""):
      base = presets.get_preset(cfg.base.preset)
    else:
      raise ValueError(f"config.base.pretrained={cfg.base.pretrained!r} is not a pretrained dir and "
                       "config.base.preset is empty: name the base's shapes with --config.base.preset "
                       f"(one of {sorted(presets.PRESETS)}).")
    vae_latent_dim = motion_vae_lib.MotionVAEConfig.latent_dim
    if cfg.vae.workdir and (epath.Path(cfg.vae.workdir) / "config.json").exists():
      vae_latent_dim = runs.load_run_config(cfg.vae.workdir, task="motion_vae").model.latent_dim
    self.model_config = self._model_config(base, vae_latent_dim)
    logging.info("shapes (no weights, no data): %s", self.model_config)

  def abstract_batch(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The packed rows `sequences.make_llamo_loader` yields: [B, T] per token, [B, T, C] latents."""
    seq_len, c = int(self.config.data.seq_len), self.model_config.latent_dim
    dtypes = {"tokens": jnp.int32, "modality": jnp.int32, "text_targets": jnp.int32,
              "positions": jnp.int32, "segment_ids": jnp.int32, "text_mask": jnp.float32,
              "flow_mask": jnp.float32, "exit_labels": jnp.float32, "exit_mask": jnp.float32,
              "cond_mask": jnp.float32}
    batch = {k: jax.ShapeDtypeStruct((batch_size, seq_len), d) for k, d in dtypes.items()}
    batch.update({k: jax.ShapeDtypeStruct((batch_size, seq_len, c), jnp.float32)
                  for k in sequences.LATENT_FEATURES})
    return batch

  @property
  def latents_path(self) -> str:
    if self.config.data.get("latents", ""):
      return self.config.data.latents
    name = epath.Path(self._motion_records_path()).name
    return str(epath.Path(self.config.vae.workdir) / "latents" / f"{name}_latents")

  def _motion_records_path(self) -> str:
    """The motion records the latents encode: the VAE run's (data.path), or with data.mirror and a VAE
    trained without mirroring, their twin NAME_mirror beside them."""
    vae_data = self.vae_config.data
    if not self.config.data.get("mirror", False) or vae_data.get("mirror", False):
      return str(vae_data.path)
    return str(vae_data.path).rstrip("/") + "_mirror"

  def _motion_records(self) -> epath.Path:
    """`_motion_records_path`, the mirrored twin built from the VAE run's corpus on first use."""
    path = self._motion_records_path()
    vae_data = self.vae_config.data
    if path == str(vae_data.path):
      return epath.Path(path)
    if "corpus" not in vae_data:
      raise ValueError(f"config.data.mirror builds mirrored records from the VAE run's synthetic corpus, but "
                       f"the VAE run at {self.config.vae.workdir} reads {vae_data.path} without one; build "
                       "them with `python -m data_pipelines.build_records --mirror`, encode them with "
                       "`python -m llamo_jax.encode_motion` and set config.data.latents, or train the VAE "
                       "with data.mirror=True.")
    corpus_dir = prepare.ensure_synthetic_corpus(vae_data.corpus)
    return prepare.ensure_records(corpus_dir, path, vae_data.representation, mirror=True)

  def make_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return llamo_lib.LLaMo(self.model_config, rngs=rngs)

  def load_pretrained(self, model: nnx.Module) -> None:
    pretrained.load_base(model, self.config.base.pretrained)

  @property
  def trainable(self) -> Any:
    if self.stage is None:
      raise ValueError("The LLaMo task trains in stages: set config.stage_order and config.stages.")
    return llamo_lib.trainable_filter(self.stage.settings.get("trainable", self.stage.name))

  # ------------------------------------------------------------------ training

  def loss(self, model, batch, rng):
    return model.loss(batch, rng)

  def make_loader(self, split: str, *, seed: int, process_index: int, process_count: int,
                  mix: dict[str, float] | None = None, num_epochs: int | None = None) -> Iterator:
    """Training batches follow the stage's mix and drop_static; held-out ones (split != "train")
    keep every clip, so evaluation losses compare across stages."""
    settings = self.stage.settings if self.stage is not None else ml_collections.ConfigDict()
    if mix is None:
      mix = settings.get("mix", ml_collections.ConfigDict()).to_dict()
    return sequences.make_llamo_loader(
        self._data_config(), split, self.tokenizer, self.bom, self.eom, mix=mix, seed=seed,
        process_index=process_index, process_count=process_count, num_epochs=num_epochs,
        drop_static=split == "train" and bool(settings.get("drop_static", False)))

  def _data_config(self) -> ml_collections.ConfigDict:
    """The config the sequence loader reads, with data.latents resolved."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      config.data.latents = self.latents_path
    return config

  def units_per_batch(self, batch):
    return "tokens", float((batch["segment_ids"] > 0).sum())

  # ------------------------------------------------------------------ evaluation

  def evaluate(self, model, step, writer):
    """Held-out loss terms per task, how much the caption lowers the flow loss (`_caption_use`), then
    T2M samples and captions (see `write_samples`)."""
    metrics = {}
    eval_loss = nnx.jit(lambda m, b: m.loss(b, jax.random.key(0))[1])
    for kind, terms in EVAL_TERMS.items():
      if not self.config.get("eval_batches", 0):
        break
      loader = self.make_loader("val", seed=0, process_index=jax.process_index(),
                                process_count=jax.process_count(), mix={kind: 1.0})
      values, caption = [], []
      for _ in range(self.config.eval_batches):
        batch = self.global_batch(next(loader))
        cond_mask = batch.pop("cond_mask", None)  # no random caption dropout in evaluation
        values.append(jax.device_get(eval_loss(model, batch)))
        if kind == "t2m":
          caption.append(jax.device_get(_caption_use(model, batch, cond_mask, self.bom)))
      metrics.update({name: float(np.mean([v[k] for v in values])) for k, name in terms.items()})
      if caption:
        metrics.update({k: float(np.mean([c[k] for c in caption])) for k in caption[0]})
        metrics["t2m_first_caption_gain"] = (metrics["t2m_first_flow_loss_nocaption"] /
                                             metrics["t2m_first_flow_loss"] - 1.0)
    if self.config.get("sampling", None) and jax.process_index() == 0:
      metrics.update(self.write_samples(llamo_lib.for_inference(model), step, writer))
    if self.config.get("t2m_eval", {}).get("evaluator", "") and jax.process_index() == 0:
      metrics.update(self.evaluator_metrics(llamo_lib.for_inference(model), step))
    return metrics

  def evaluator_metrics(self, model, step: int) -> dict[str, float]:
    """One-pass R-precision top-1..3 and FID (config.t2m_eval; eval/t2m_protocol.one_pass_t2m) of motions
    generated with config.sampling for the first captions of the first `clips` clips of the split."""
    cfg = self.config.t2m_eval
    if getattr(self, "_t2m_eval", None) is None:
      evaluator = evaluator_lib.load_evaluator(cfg.evaluator)
      if evaluator.representation != self.representation.name:
        raise ValueError(f"config.t2m_eval.evaluator={cfg.evaluator} reads {evaluator.representation}, this "
                         f"LLaMo's VAE {self.representation.name}: use an evaluator of {self.representation.name}.")
      reference = cfg.get("reference", "") or self.vae_config.data.get("corpus", {}).get("dir", "")
      if not reference:
        raise ValueError("config.t2m_eval.reference is empty and the VAE run names no corpus folder "
                         "(data.corpus.dir): set config.t2m_eval.reference to a HumanML3D-layout folder.")
      clips = t2m_protocol.read_folder(reference, self.representation.name, cfg.get("split", "val"),
                                       t2m_protocol.Skips(), min_len=40)
      clips = t2m_protocol.select_clips(clips, evaluator, "none", t2m_protocol.Skips(), "reference")
      self._t2m_eval = evaluator, clips[:int(cfg.get("clips", 64))]
    evaluator, clips = self._t2m_eval
    prompts = [c.captions[0] for c in clips]
    features, _, _ = self.sample_motions(model, prompts, jax.random.key(step))
    generated = [t2m_protocol.EvalClip(c.clip_id, f, (p,)) for c, p, f in zip(clips, prompts, features)]
    return {f"t2m_{k}": v for k, v in t2m_protocol.one_pass_t2m(evaluator, clips, generated, seed=step).items()}

  def write_samples(self, model, step: int, writer: Any) -> dict[str, float]:
    """T2M for config.sampling.prompts and captions of the first held-out motions.

    Writes WORKDIR/samples/step_N/: t2m_I.npy (joints [T,22,3]) and t2m_I.gif of the first
    sample of prompt I, t2m.json (every sample, config.sampling.samples_per_prompt per prompt:
    frames and, with config.sampling.expect, the action check of eval/action_checks.py),
    captions.json (generated, references, actions named); logs filmstrips, captions and
    t2m_prompt_adherence / m2t_action_recall to TensorBoard.
    """
    from llamo_jax.motion import stick_figure  # pylint: disable=g-import-not-at-top  (matplotlib)
    s = self.config.sampling
    out = epath.Path(self.workdir) / "samples" / f"step_{step}"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    # Text to motion.
    prompts, n_per = list(s.prompts), int(s.get("samples_per_prompt", 1))
    if prompts:
      expect = list(s.get("expect", ()))  # validated in prepare
      # Sample j of prompt i is row j * len(prompts) + i; sample 0 of each is rendered.
      _, motions, lengths = self.sample_motions(model, prompts * n_per, jax.random.key(step))
      images, report = {}, []
      for row, joints in enumerate(motions):
        i, j = row % len(prompts), row // len(prompts)
        if j == 0:
          paths.save_npy(out / f"t2m_{i}.npy", joints)
          stick_figure.render_motion(joints, out / f"t2m_{i}.gif", fps=self.representation.fps,  # out may be gs://
                                     caption=prompts[i])
          images[f"t2m/{i}"] = stick_figure.render_frames_image(joints, prompts[i])[None]
        entry = {"prompt": prompts[i], "sample": j, "frames": int(joints.shape[0])}
        if expect:
          entry.update(expect=expect[i], **action_checks.check(joints, self.representation.fps, expect[i]))
        report.append(entry)
      writer.write_images(step, images)
      (out / "t2m.json").write_text(json.dumps(report, indent=1))
      metrics["t2m_mean_latents"] = float(np.mean(lengths))
      if expect:
        metrics["t2m_prompt_adherence"] = float(np.mean([e["ok"] for e in report]))
    # Motion to text.
    n = int(s.get("num_captions", 0))
    if n:
      captions = self.caption_heldout(model, n, max_new_tokens=int(s.max_caption_tokens))
      (out / "captions.json").write_text(json.dumps(captions, indent=1))
      recall = action_checks.caption_recall([c["named_actions"] for c in captions])
      metrics["m2t_action_recall"] = recall.get("actions", 0.0)
      metrics["m2t_first_action_recall"] = recall.get("first_action", 0.0)
      writer.write_texts(step, {f"m2t/{i}": f"**{c['generated']}** (reference: {c['references'][0]})"
                                for i, c in enumerate(captions)})
    logging.info("wrote samples to %s", out)
    return metrics

  def sampling_settings(self, **overrides: Any) -> dict[str, Any]:
    """config.sampling with the non-None `overrides` on top; a run whose config predates
    `flow_dtype` / `backbone_dtype` samples in text_to_motion's defaults."""
    s = {"flow_dtype": text_to_motion.DEFAULT_FLOW_DTYPE,
         "backbone_dtype": text_to_motion.DEFAULT_BACKBONE_DTYPE, **self.config.sampling.to_dict()}
    return dict(s, **{k: v for k, v in overrides.items() if v is not None})

  def sample_motions(self, model, prompts: list[str], key: jax.Array, **overrides: Any
                     ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Text to motion with config.sampling (non-None `overrides` win), one sample per prompt.

    Returns (features [T, D] in the VAE's representation, denormalised; joints [T, 22, 3];
    latents generated per prompt [B]). `prefix_latents` / `prefix_lengths` (e.g. from
    `encode_latents`) continue given first latents (generation/text_to_motion.py).
    """
    s = self.sampling_settings(**overrides)
    tokens = [sequences.t2m_prompt(self.tokenizer, p, self.bom) for p in prompts]
    latents, lengths = text_to_motion.generate_motion(
        model, tokens, key, max_latents=s["max_latents"], cfg_scale=s["cfg_scale"],
        flow_steps=s["flow_steps"], method=s["method"], temperature=s["temperature"],
        exit_threshold=s["exit_threshold"], prefix_latents=s.get("prefix_latents"),
        prefix_lengths=s.get("prefix_lengths"), flow_dtype=s["flow_dtype"],
        backbone_dtype=s["backbone_dtype"], start_cfg_scale=s.get("start_cfg_scale"),
        start_latents=s.get("start_latents", 0))
    feats = decode.decode_latents(self.vae, np.asarray(latents), np.asarray(lengths),
                                  self.latent_mean, self.latent_std)
    features = [f * self.vae_task.std + self.vae_task.mean for f in feats]
    joints = [np.asarray(self.representation.to_joints(f)) for f in features]
    return features, joints, np.asarray(lengths)

  def encode_latents(self, features: list[np.ndarray], max_latents: int) -> tuple[np.ndarray, np.ndarray]:
    """Motions (features [T_i, D], denormalised) -> the LLaMo's normalised latents [B, K, C] (zero past
    each length) and lengths [B], each cut to `max_latents`."""
    feats = [(np.asarray(f, np.float32) - self.vae_task.mean) / self.vae_task.std for f in features]
    lengths = np.array([len(f) for f in feats], np.int32)
    batch = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
      batch[i, :len(f)] = f
    z = np.asarray(motion_vae.encode(self.vae, jnp.asarray(batch), jnp.asarray(lengths)))
    k = np.minimum(-(-lengths // FRAMES_PER_LATENT), max_latents)
    z = (z[:, :int(k.max())] - self.latent_mean) / self.latent_std
    return z * (np.arange(z.shape[1])[None, :, None] < k[:, None, None]), k.astype(np.int32)

  def caption_features(self, model, features: np.ndarray) -> str:
    """A greedy caption of one motion, features [T, D] in the VAE's representation (denormalised)."""
    return self.caption_motions(model, [features])[0]

  def caption_motions(self, model, features: list[np.ndarray], max_new_tokens: int | None = None) -> list[str]:
    """Greedy captions of motions (features [T_i, D], denormalised), batched; the motion is cut to
    data.max_motion_tokens latents as in training."""
    z, k = self.encode_latents(features, int(self.config.data.get("max_motion_tokens", 50)))
    ids = captioning.caption_motion(model, z, k.astype(np.int32), sequences.m2t_prompt(self.tokenizer, self.bom),
                                    eos_id=self.tokenizer.eos_id,
                                    max_new_tokens=int(max_new_tokens or self.config.sampling.max_caption_tokens))
    return [self.tokenizer.decode(t) for t in ids]

  def caption_heldout(self, model, n: int, *, max_new_tokens: int = 40) -> list[dict[str, Any]]:
    """Greedy captions of the first `n` clips of the latent val split, with references and actions named."""
    source = records.open_dataset(self.latents_path).data_source("val")
    recs = [records.decode(source[i]) for i in range(min(n, len(source)))]
    for r in recs:  # as in training: the first data.max_motion_tokens latents
      r["length"] = min(r["length"], int(self.config.data.get("max_motion_tokens", 50)))
      r["features"] = r["features"][:r["length"]]
    k_max = max(r["length"] for r in recs)
    latents = np.zeros((len(recs), k_max, self.model_config.latent_dim), np.float32)
    for i, r in enumerate(recs):
      latents[i, :r["length"]] = (r["features"] - self.latent_mean) / self.latent_std
    lengths = np.array([r["length"] for r in recs], np.int32)
    ids = captioning.caption_motion(model, latents, lengths, sequences.m2t_prompt(self.tokenizer, self.bom),
                                    eos_id=self.tokenizer.eos_id, max_new_tokens=max_new_tokens)
    out = []
    for r, t in zip(recs, ids):
      generated = self.tokenizer.decode(t)
      out.append({"clip_id": r["clip_id"], "generated": generated, "references": r["captions"],
                  "named_actions": action_checks.named_actions(generated, r["attributes"])})
    return out


@nnx.jit
def _caption_use(model: llamo_lib.LLaMo, batch: dict[str, jax.Array], cond_mask: jax.Array, bom: int
                 ) -> dict[str, jax.Array]:
  """Held-out T2M flow loss with the caption and with it dropped (as CFG training drops it: the
  caption tokens move to their own segment), over every motion target and at [BOM] alone (the
  first latent, which only the caption can inform). Same noise in both; a model that ignores the
  text scores the same with and without it."""
  key = jax.random.key(0)
  dropped = dict(batch, segment_ids=jnp.where(cond_mask > 0, -batch["segment_ids"], batch["segment_ids"]))
  first = batch["flow_mask"] * (batch["tokens"] == bom)
  return {"t2m_flow_loss_nocaption": model.loss(dropped, key)[1]["flow_loss"],  # with it: t2m_flow_loss
          "t2m_first_flow_loss": model.loss(dict(batch, flow_mask=first), key)[1]["flow_loss"],
          "t2m_first_flow_loss_nocaption": model.loss(dict(dropped, flow_mask=first), key)[1]["flow_loss"]}
