"""LLaMo training sequences (T2M, M2T, text-only) over latent records, packed by Grain.

Templates (token ids: text from the base tokenizer, [BOM] = V, [EOM] = V+1):
  t2m   [BOS] "<instruction with the caption>" [BOM] m1..mK [EOM] [EOS]
  m2t   [BOS] "<instruction>" [BOM] m1..mK [EOM] "<caption>" [EOS]
  text  [BOS] "<caption>" [EOS]
Training draws a template per example; inference uses template 0 (`t2m_prompt`,
`m2t_prompt`). Targets follow `llamo_jax.models.llamo`'s batch format:
  t2m   flow targets from [BOM] to m_{K-1} (the next latent), exit label 1 at mK
        (exit mask on m1..mK), text target only [EOM] -> [EOS] (the prompt runs on
        the frozen text path), cond_mask on every token before [BOM] (what
        classifier-free guidance drops);
  m2t   text targets from [EOM] on: the caption and [EOS]; no flow/exit targets;
  text  text targets on every token after BOS. The text path is frozen, so this
        kind gives no gradient; it measures that text ability is untouched (eval).

`make_llamo_loader` reads latent records (written by `llamo_jax.encode_motion`),
draws per example a task kind from the mix, a caption and a template, builds the
example and packs examples first-fit into rows of `data.seq_len`. Two extra
per-example features whose lengths are the example's text and motion token
counts make the packer respect the MoT buffer sizes (model.text_capacity /
motion_capacity), so routing never overflows. Like the text LM loader, every
host packs the same global batch and keeps its rows, so the global batch (and
the losses) do not depend on the number of processes.

Config keys (config.data): latents (dir), seq_len, batch_size (global),
max_motion_tokens (clips keep their first this-many latents; default 50 = 200
frames, longer than any HumanML3D clip), static_speed (m/s; with drop_static,
clips whose mean root speed is below it are skipped; default 0.05);
config.model.text_capacity / motion_capacity (None = seq_len).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import grain
import ml_collections
import numpy as np

from llamo_jax.data import records
from llamo_jax.data.tokenizer import Tokenizer

KINDS = ("t2m", "m2t", "text")
T2M_TEMPLATES = ("Generate a motion: {caption}",
                 "Show a person doing this: {caption}",
                 "Animate the following description. {caption}",
                 "Text to motion: {caption}")
M2T_TEMPLATES = ("Describe the motion:",
                 "What is the person doing?",
                 "Caption this motion:",
                 "Motion to text:")
# Per-token int/float features of an example (latents/flow_targets add a C axis).
TOKEN_FEATURES = ("tokens", "modality", "text_targets", "text_mask", "flow_mask", "exit_labels",
                  "exit_mask", "cond_mask")
LATENT_FEATURES = ("latents", "flow_targets")
ROOT_SPEED_KEY = "root_speed"


def t2m_prompt(tokenizer: Tokenizer, caption: str, bom: int, template: int = 0) -> np.ndarray:
  """int32 `[BOS] instruction(caption) [BOM]`: what text-to-motion feeds before m1."""
  text = T2M_TEMPLATES[template].format(caption=caption.strip())
  return np.asarray(tokenizer.encode(text, add_bos=True) + [bom], np.int32)


def m2t_prompt(tokenizer: Tokenizer, bom: int, template: int = 0) -> np.ndarray:
  """int32 `[BOS] instruction [BOM]`: what captioning feeds before m1."""
  return np.asarray(tokenizer.encode(M2T_TEMPLATES[template], add_bos=True) + [bom], np.int32)


def build_example(kind: str, caption: str, latents: np.ndarray, tokenizer: Tokenizer, bom: int,
                  eom: int, template: int = 0) -> dict[str, np.ndarray]:
  """One unpacked example of `kind` (module docstring): per-token arrays of length L.

  latents: [K, C] normalised motion latents (ignored for "text").
  """
  if kind not in KINDS:
    raise ValueError(f"Unknown sequence kind {kind!r}; choose one of {KINDS}.")
  c = latents.shape[-1]
  eos = tokenizer.eos_id
  if kind == "text":
    prefix = np.asarray(tokenizer.encode(caption.strip(), add_bos=True, add_eos=True), np.int32)
    suffix = np.zeros((0,), np.int32)
    latents = np.zeros((0, c), np.float32)
  elif kind == "t2m":
    prefix = t2m_prompt(tokenizer, caption, bom, template)
    suffix = np.asarray([eom, eos], np.int32)
  else:
    prefix = m2t_prompt(tokenizer, bom, template)
    suffix = np.asarray([eom] + tokenizer.encode(caption.strip(), add_bos=False, add_eos=True), np.int32)
  p, k = len(prefix), len(latents)
  tokens = np.concatenate([prefix, np.zeros((k,), np.int32), suffix])
  n = len(tokens)
  modality = np.zeros((n,), np.int32)
  modality[p:p + k] = 1
  lat = np.zeros((n, c), np.float32)
  lat[p:p + k] = latents
  # Next-token text targets; positions whose next token is motion/[BOM]/[EOM] get none.
  text_targets = np.zeros((n,), np.int32)
  text_targets[:-1] = tokens[1:]
  targetable = np.zeros((n,), bool)
  targetable[:-1] = (modality[1:] == 0) & (tokens[1:] < bom)
  text_targets = np.where(targetable, text_targets, 0)
  text_mask = np.zeros((n,), np.float32)
  flow_targets = np.zeros((n, c), np.float32)
  flow_mask = np.zeros((n,), np.float32)
  exit_labels = np.zeros((n,), np.float32)
  exit_mask = np.zeros((n,), np.float32)
  cond_mask = np.zeros((n,), np.float32)
  if kind == "text":
    text_mask[:-1] = 1.0
  elif kind == "t2m":
    text_mask[p + k] = 1.0                      # [EOM] -> [EOS]
    flow_targets[p - 1:p + k - 1] = latents     # [BOM]..m_{K-1} predict m1..mK
    flow_mask[p - 1:p + k - 1] = 1.0
    exit_labels[p + k - 1] = 1.0
    exit_mask[p:p + k] = 1.0
    cond_mask[:p - 1] = 1.0                     # everything before [BOM]
  else:
    text_mask[p + k:n - 1] = 1.0                # [EOM] .. last caption token
  text_mask *= targetable
  return {"tokens": tokens, "modality": modality, "latents": lat, "text_targets": text_targets,
          "text_mask": text_mask, "flow_targets": flow_targets, "flow_mask": flow_mask,
          "exit_labels": exit_labels, "exit_mask": exit_mask, "cond_mask": cond_mask}


def root_speed(attributes: str) -> float | None:
  """The mean root speed (m/s) that encode_motion stores in a latent record's attributes."""
  try:
    value = json.loads(attributes).get(ROOT_SPEED_KEY) if attributes else None
  except (json.JSONDecodeError, AttributeError):
    return None
  return None if value is None else float(value)


def _normalise_mix(mix: Mapping[str, float]) -> tuple[tuple[str, ...], np.ndarray]:
  unknown = set(mix) - set(KINDS)
  if unknown:
    raise ValueError(f"Unknown task kinds {sorted(unknown)} in the mix; choose from {KINDS}.")
  kinds = tuple(k for k in KINDS if mix.get(k, 0.0) > 0)
  if not kinds:
    raise ValueError(f"The task mix {dict(mix)} gives no kind a positive weight.")
  weights = np.asarray([mix[k] for k in kinds], np.float64)
  return kinds, weights / weights.sum()


class _MakeExample(grain.transforms.RandomMap):
  """A latent record -> one example (kind, caption and template drawn from the rng)."""

  def __init__(self, tokenizer: Tokenizer, bom: int, eom: int, mix: Mapping[str, float],
               mean: np.ndarray, std: np.ndarray, max_motion_tokens: int, seq_len: int,
               text_capacity: int, motion_capacity: int, bom_in_motion: bool):
    self.tokenizer, self.bom, self.eom = tokenizer, bom, eom
    self.bom_in_motion = bom_in_motion
    self.kinds, self.weights = _normalise_mix(mix)
    self.mean, self.inv_std = mean.astype(np.float32), (1.0 / std).astype(np.float32)
    self.max_motion_tokens, self.seq_len = max_motion_tokens, seq_len
    self.text_capacity, self.motion_capacity = text_capacity, motion_capacity

  def random_map(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    rec = records.decode(record)
    kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
    caption = rec["captions"][int(rng.integers(len(rec["captions"])))]
    templates = T2M_TEMPLATES if kind == "t2m" else M2T_TEMPLATES
    template = int(rng.integers(len(templates)))
    latents = (rec["features"][:self.max_motion_tokens] - self.mean) * self.inv_std
    ex = build_example(kind, caption, latents, self.tokenizer, self.bom, self.eom, template)
    if len(ex["tokens"]) > self.seq_len:
      raise ValueError(f"A {kind} example of clip {rec['clip_id']} has {len(ex['tokens'])} tokens, more than "
                       f"data.seq_len={self.seq_len}; raise data.seq_len or lower data.max_motion_tokens.")
    # Tokens per MoT expert buffer: [BOM] runs the motion expert under model.bom_expert="motion".
    n_motion = int(ex["modality"].sum()) + (int(np.sum(ex["tokens"] == self.bom)) if self.bom_in_motion else 0)
    n_text = len(ex["tokens"]) - n_motion
    if n_text > self.text_capacity or n_motion > self.motion_capacity:
      raise ValueError(f"A {kind} example of clip {rec['clip_id']} has {n_text} text / {n_motion} motion tokens; "
                       f"the MoT buffers hold {self.text_capacity} / {self.motion_capacity}. Raise "
                       "model.text_capacity / model.motion_capacity (None = data.seq_len) or lower "
                       "data.max_motion_tokens.")
    ex["n_text"] = np.zeros((len(ex["tokens"]) - n_motion,), np.int32)
    ex["n_motion"] = np.zeros((n_motion,), np.int32)
    return ex


class _KeepMoving:
  """Filter: records whose stored mean root speed is at least `threshold` m/s."""

  def __init__(self, threshold: float):
    self.threshold = threshold

  def __call__(self, record: Mapping[str, Any]) -> bool:
    attributes = record["attributes"]
    speed = root_speed(attributes.decode("utf-8") if isinstance(attributes, bytes) else str(attributes))
    if speed is None:
      raise ValueError(f"Latent record {record['clip_id']!r} has no {ROOT_SPEED_KEY!r} attribute, which "
                       "drop_static needs; re-encode the latents with `python -m llamo_jax.encode_motion`.")
    return speed >= self.threshold


def make_llamo_loader(config: ml_collections.ConfigDict, split: str, tokenizer: Tokenizer, bom: int,
                      eom: int, *, mix: Mapping[str, float], seed: int, process_index: int = 0,
                      process_count: int = 1, num_epochs: int | None = None,
                      drop_static: bool = False) -> grain.DatasetIterator:
  """A checkpointable iterator of this host's packed LLaMo batches (module docstring).

  Yields numpy [B_host, T] (latents, flow_targets: [B_host, T, C]) with the keys of
  `LLaMo.loss`'s batch: tokens, latents, modality, positions, segment_ids (0 =
  padding), text_targets, text_mask, flow_targets, flow_mask, exit_labels,
  exit_mask, cond_mask.
  """
  data = config.data
  seq_len, global_batch = int(data.seq_len), int(data.batch_size)
  if global_batch % process_count:
    raise ValueError(f"data.batch_size={global_batch} (global) is not divisible by {process_count} processes.")
  dataset = records.open_dataset(data.latents)
  if not dataset.representation.startswith("vae_latent:"):
    raise ValueError(f"{data.latents} holds {dataset.representation} features, not VAE latents; encode a "
                     "motion dataset first (python -m llamo_jax.encode_motion).")
  model = config.get("model", ml_collections.ConfigDict())
  text_capacity = min(model.get("text_capacity", None) or seq_len, seq_len)
  motion_capacity = min(model.get("motion_capacity", None) or seq_len, seq_len)
  ds = grain.MapDataset.source(dataset.data_source(split))
  if drop_static:
    ds = ds.filter(_KeepMoving(float(data.get("static_speed", 0.05))))
  ds = ds.seed(seed).shuffle().repeat(num_epochs)
  ds = ds.random_map(_MakeExample(tokenizer, bom, eom, mix, dataset.mean, dataset.std,
                                  int(data.get("max_motion_tokens", 50)), seq_len, text_capacity,
                                  motion_capacity, model.get("bom_expert", "text") == "motion"))
  lengths = {k: seq_len for k in TOKEN_FEATURES + LATENT_FEATURES}
  lengths.update(n_text=text_capacity, n_motion=motion_capacity)
  packed = grain.experimental.FirstFitPackIterDataset(
      ds.to_iter_dataset(), length_struct=lengths, num_packing_bins=max(2 * global_batch, 8), seed=seed)
  per_host = global_batch // process_count
  rows = slice(process_index * per_host, (process_index + 1) * per_host)

  def host_rows(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: batch[k][rows] for k in TOKEN_FEATURES + LATENT_FEATURES}
    out["segment_ids"] = batch["tokens_segment_ids"][rows]
    out["positions"] = batch["tokens_positions"][rows]
    return out

  return iter(packed.batch(global_batch, drop_remainder=num_epochs is None).map(host_rows))


def row_token_counts(batches: Sequence[Mapping[str, np.ndarray]], bom: int | None = None) -> dict[str, int]:
  """Largest per-row text- and motion-expert token counts over some batches (for choosing
  capacities); with `bom` given, [BOM] counts as a motion-expert token (model.bom_expert="motion")."""
  def motion(b):
    return (b["modality"] == 1) | ((b["tokens"] == bom) if bom is not None else False)
  text = max(int((~motion(b) & (b["segment_ids"] > 0)).sum(1).max()) for b in batches)
  motion = max(int(motion(b).sum(1).max()) for b in batches)
  return {"text": text, "motion": motion}
