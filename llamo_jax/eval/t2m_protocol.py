"""The text-to-motion evaluation protocol (Guo et al.) around a text-motion evaluator.

An evaluator (`Evaluator` below; trained ones come from `tasks.evaluator.load_evaluator`)
embeds captions and raw (unnormalised) feature clips into one space. `evaluate_t2m` scores
a set of generated clips against reference clips with the metrics of `eval/t2m_metrics.py`,
`num_repeats` times (20 in the protocol), and reports each as {"mean", "ci95"}.

One repetition:
  1. every reference clip: a random one of its captions and a crop (below); embeddings;
  2. every generated clip: the same, with its own captions (the prompts it was generated
     from); without generated clips (the "Real motion" row) a second, independent pass over
     the reference clips;
  3. R-precision top-1/2/3 and MM-Dist of (2) in shuffled batches of 32, FID of the motion
     embeddings of (1) against (2), Diversity of (2) over 300 pairs;
  4. MultiModality, when samples per prompt are given: their whole clips (cut to a multiple
     of the unit length), 10 pairs per prompt.

Crops (`crop`):
  protocol  the released evaluation's dataset: the length is cut to a multiple of the
            unit length (4), one more unit is dropped with probability 1/3, and the window
            starts at a random frame. As in the released loader, only clips shorter than
            max_motion_length + unit_length (200) frames take part; longer ones are skipped.
  none      whole clips, cut to a multiple of the unit length; clips up to
            max_motion_length (196) frames take part. Deterministic apart from the caption
            draws and batch shuffles.
Every clip left out is counted with its reason (`Skips`); the run fails with one message
when too few remain (R-precision needs 32).

By default the generated set is generated once and repetitions redraw crops, captions,
batches and pairs; with `regenerate` (evaluate --regenerate) every repetition after the first
scores a fresh generation, as the released code does (num_repeats generations).
Random draws come from numpy Generators seeded from `seed`, so a run is reproducible.

Dimension names: N clips, T frames, C feature dims, D embedding.
"""
from __future__ import annotations

import collections
import dataclasses
import pathlib
from typing import Callable, Protocol, Sequence

import numpy as np
import tqdm

from llamo_jax.data import sources
from llamo_jax.eval import t2m_metrics
from llamo_jax.motion import representation as representation_lib

CROPS = ("protocol", "none")
DOUBLE_UNIT_DROP = 1.0 / 3.0  # the released loader drops one more unit with this probability
MOTION_BATCH = 256            # clips per encode_motions call


class Evaluator(Protocol):
  """What the protocol needs of a text-motion evaluator."""
  representation: str    # "hml263" | "mm272": the features it reads
  unit_length: int       # frames per motion unit (4)
  max_motion_length: int  # longest clip it reads (196)

  def encode_texts(self, texts: list[str]) -> np.ndarray:  # -> [N, D]
    ...

  def encode_motions(self, motions: list[np.ndarray]) -> np.ndarray:  # raw [T_i, C] -> [N, D]
    ...


@dataclasses.dataclass(frozen=True)
class EvalClip:
  """One evaluated clip: raw features [T, C], its captions (at least one), its attribute record (JSON)."""
  clip_id: str
  features: np.ndarray
  captions: tuple[str, ...]
  attributes: str = "{}"


@dataclasses.dataclass
class Skips:
  """Clips left out of an evaluation, counted per reason, with the clip and the detail."""
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  details: list = dataclasses.field(default_factory=list)

  def skip(self, clip_id: str, reason: str, detail: str) -> None:
    self.counts[reason] += 1
    self.details.append({"id": clip_id, "reason": reason, "detail": detail})

  def to_dict(self) -> dict:
    return {"total": sum(self.counts.values()), "by_reason": dict(self.counts), "clips": list(self.details)}


# ------------------------------------------------------------------ reading clips

def read_folder(root: str | pathlib.Path, representation: str, split: str, skips: Skips, *,
                min_len: int, ids: Sequence[str] | None = None) -> list[EvalClip]:
  """Clips of a HumanML3D-layout folder (features of `representation` + texts/ID.txt).

  IDs: `ids` when given, else the folder's SPLIT.txt. Sub-clips of caption lines with a time
  span become clips of their own (as in training). Unreadable, NaN, wrong-dimension,
  caption-less and too-short clips are counted in `skips` under data/sources.py's reasons.
  """
  source = sources.HumanML3DSource(root, representation, min_len=min_len, features_only=True)
  if ids is None:
    ids = source.split_ids(split)
  report = sources.SkipReport()
  clips = [EvalClip(c.clip_id, c.features, c.captions, c.attributes)
           for sid in ids for c in source.read_clips(sid, split, report)]
  for d in report.details:
    skips.skip(d["id"], d["reason"], d["detail"])
  return clips


def select_clips(clips: Sequence[EvalClip], evaluator: Evaluator, crop: str, skips: Skips,
                 name: str) -> list[EvalClip]:
  """The clips the protocol evaluates (module docstring); others counted in `skips`.

  Features of the wrong size (e.g. another representation's) fail at once: no clip of such a
  set can be read by this evaluator.
  """
  if crop not in CROPS:
    raise ValueError(f"crop={crop!r}; choose one of {CROPS}.")
  dim = representation_lib.get_representation(evaluator.representation).dim
  unit, longest = int(evaluator.unit_length), int(evaluator.max_motion_length)
  shortest = 2 * unit if crop == "protocol" else unit
  too_long = longest + unit if crop == "protocol" else longest + 1
  kept = []
  for c in clips:
    f = np.asarray(c.features)
    if f.ndim != 2 or f.shape[1] != dim:
      raise ValueError(f"{name} clip {c.clip_id} has features of shape {f.shape}, but the evaluator reads "
                       f"{evaluator.representation} [T, {dim}]: use an evaluator of this representation "
                       "or features of its.")
    if not np.all(np.isfinite(f)):
      skips.skip(c.clip_id, "non_finite", f"{name}: NaN/inf in the features")
    elif not c.captions:
      skips.skip(c.clip_id, "empty_caption", f"{name}: no caption")
    elif len(f) < shortest:
      skips.skip(c.clip_id, "too_short", f"{name}: {len(f)} frames < {shortest} (crop={crop})")
    elif len(f) >= too_long:
      skips.skip(c.clip_id, "too_long", f"{name}: {len(f)} frames > {too_long - 1} (crop={crop})")
    else:
      kept.append(c)
  return kept


def crop_motion(features: np.ndarray, rng: np.random.Generator, crop: str, unit_length: int) -> np.ndarray:
  """One evaluated window of a clip [T, C] (module docstring, Crops)."""
  units = len(features) // unit_length
  if crop == "none":
    return features[:units * unit_length]
  if rng.random() < DOUBLE_UNIT_DROP:
    units -= 1
  length = units * unit_length
  start = int(rng.integers(0, len(features) - length + 1))
  return features[start:start + length]


# ------------------------------------------------------------------ embedding

class Embedder:
  """Batches an evaluator's calls; a caption's embedding is computed once per run."""

  def __init__(self, evaluator: Evaluator):
    self.evaluator = evaluator
    self._texts: dict[str, np.ndarray] = {}

  def texts(self, captions: Sequence[str]) -> np.ndarray:
    new = sorted(set(captions) - set(self._texts))
    if new:
      for text, e in zip(new, np.asarray(self.evaluator.encode_texts(new))):
        self._texts[text] = e
    return np.stack([self._texts[c] for c in captions])

  def motions(self, motions: Sequence[np.ndarray]) -> np.ndarray:
    out = [np.asarray(self.evaluator.encode_motions(list(motions[i:i + MOTION_BATCH])))
           for i in range(0, len(motions), MOTION_BATCH)]
    return np.concatenate(out).astype(np.float64)


def embed_pass(embedder: Embedder, clips: Sequence[EvalClip], rng: np.random.Generator, crop: str,
               first_caption: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(text embeddings [N, D], motion embeddings [N, D], captions used) of one pass over clips."""
  unit = int(embedder.evaluator.unit_length)
  captions = [c.captions[0] if first_caption else c.captions[int(rng.integers(len(c.captions)))]
              for c in clips]
  motions = [crop_motion(np.asarray(c.features, np.float32), rng, crop, unit) for c in clips]
  return embedder.texts(captions), embedder.motions(motions), captions


# ------------------------------------------------------------------ the protocol

def _check_enough(clips: Sequence[EvalClip], name: str, skips: Skips) -> None:
  if len(clips) < t2m_metrics.R_PRECISION_BATCH:
    reasons = ", ".join(f"{k}: {v}" for k, v in skips.counts.items()) or "none"
    raise ValueError(f"{name}: {len(clips)} clips to evaluate, R-precision needs at least "
                     f"{t2m_metrics.R_PRECISION_BATCH} (batches of 32). Clips skipped so far: {reasons}. "
                     "Evaluate a larger split, or see the skipped clips' reasons.")


def evaluate_t2m(evaluator: Evaluator, reference: Sequence[EvalClip],
                 generated: Sequence[EvalClip] | None = None, *,
                 multimodal: Sequence[Sequence[np.ndarray]] | None = None, num_repeats: int = 20,
                 crop: str = "protocol", seed: int = 0, skips: Skips | None = None,
                 progress: bool = True, label: str = "",
                 regenerate: Callable[[int], Sequence[EvalClip]] | None = None) -> dict:
  """T2M metrics of `generated` (None: the reference itself, the Real-motion row) against `reference`.

  Args:
    evaluator: the text-motion evaluator.
    reference: real clips (the test split).
    generated: clips to score, each with the caption(s) it was generated from.
    multimodal: for MultiModality, P lists of S raw generated feature clips (one list per
      prompt; S >= 10); None leaves the metric out.
    num_repeats: repetitions (the protocol: 20).
    crop: "protocol" | "none" (module docstring).
    seed: seeds every random draw.
    skips: where clips left out are counted (a fresh one if None).
    progress: show a progress bar over the repetitions.
    label: the bar's name.
    regenerate: repeat index i >= 1 -> a fresh generated set for that repetition (module docstring).

  Returns:
    {"fid", "r_precision": {"top1", "top2", "top3"}, "mm_dist", "diversity"[, "multimodality"]}
    each {"mean", "ci95"}, and "protocol": {"num_clips", "num_reference_clips", "num_repeats", "crop",
    "seed", "skipped", "notes"}.
  """
  if num_repeats < 1:
    raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
  skips = skips if skips is not None else Skips()
  reference = select_clips(reference, evaluator, crop, skips, "reference")
  _check_enough(reference, "reference", skips)
  if generated is not None:
    generated = select_clips(generated, evaluator, crop, skips, "generated")
    _check_enough(generated, "generated", skips)
  scored = reference if generated is None else generated
  pairs = min(t2m_metrics.DIVERSITY_PAIRS, len(scored))
  notes = []
  if pairs < t2m_metrics.DIVERSITY_PAIRS:
    notes.append(f"diversity over {pairs} pairs, not {t2m_metrics.DIVERSITY_PAIRS}: only {pairs} clips")
  mm_embeddings = None
  embedder = Embedder(evaluator)
  if multimodal is not None:
    unit = int(evaluator.unit_length)
    samples = [len(s) for s in multimodal]
    if not samples or min(samples) != max(samples):
      raise ValueError(f"MultiModality needs the same number of samples per prompt, got {samples[:10]}.")
    flat = [crop_motion(np.asarray(m, np.float32), None, "none", unit) for s in multimodal for m in s]
    mm_embeddings = embedder.motions(flat).reshape(len(multimodal), samples[0], -1)

  values = collections.defaultdict(list)
  root = np.random.SeedSequence(seed)
  for repeat, rep_seed in enumerate(tqdm.tqdm(root.spawn(num_repeats), desc=label or "t2m evaluation",
                                              unit="repeat", disable=not progress, leave=False)):
    ref_rng, gen_rng, rank_rng, div_rng, mm_rng = (np.random.default_rng(s) for s in rep_seed.spawn(5))
    if regenerate is not None and repeat > 0:
      scored = select_clips(regenerate(repeat), evaluator, crop, Skips(), "generated")
      _check_enough(scored, "generated", skips)
    _, ref_motions, _ = embed_pass(embedder, reference, ref_rng, crop)
    texts, motions, _ = embed_pass(embedder, scored, gen_rng, crop)
    top_k, mm_dist = t2m_metrics.r_precision_mm_dist(texts, motions, rank_rng)
    for k, v in enumerate(top_k):
      values[f"top{k + 1}"].append(v)
    values["mm_dist"].append(mm_dist)
    values["fid"].append(t2m_metrics.fid(ref_motions, motions))
    # A regenerated set may lose clips to the crop's length rules: fewer pairs, noted below.
    rep_pairs = min(pairs, len(scored))
    if rep_pairs < pairs:
      notes.append(f"repeat {repeat + 1}: diversity over {rep_pairs} pairs ({len(scored)} generated clips kept)")
    values["diversity"].append(t2m_metrics.diversity(motions, div_rng, rep_pairs))
    if mm_embeddings is not None:
      values["multimodality"].append(t2m_metrics.multimodality(mm_embeddings, mm_rng))

  out = {"fid": t2m_metrics.mean_ci95(values["fid"]),
         "r_precision": {f"top{k}": t2m_metrics.mean_ci95(values[f"top{k}"])
                         for k in range(1, t2m_metrics.TOP_K + 1)},
         "mm_dist": t2m_metrics.mean_ci95(values["mm_dist"]),
         "diversity": t2m_metrics.mean_ci95(values["diversity"])}
  if mm_embeddings is not None:
    out["multimodality"] = t2m_metrics.mean_ci95(values["multimodality"])
  out["protocol"] = {"num_clips": len(scored), "num_reference_clips": len(reference),
                     "num_repeats": num_repeats, "regenerated": regenerate is not None, "crop": crop, "seed": seed,
                     "skipped": skips.to_dict(),
                     "notes": notes}
  return out


def one_pass_t2m(evaluator: Evaluator, reference: Sequence[EvalClip], generated: Sequence[EvalClip],
                 seed: int = 0) -> dict[str, float]:
  """A quick look for in-training evaluation: one repetition of R-precision top-1..3 and FID, whole clips.

  Returns {"rprecision_top1", "rprecision_top2", "rprecision_top3", "fid"} (floats).
  """
  m = evaluate_t2m(evaluator, reference, generated, num_repeats=1, crop="none", seed=seed, progress=False)
  out = {f"rprecision_{k}": v["mean"] for k, v in m["r_precision"].items()}
  out["fid"] = m["fid"]["mean"]
  return out


def generated_embeddings(evaluator: Evaluator, clips: Sequence[EvalClip], crop: str, seed: int
                         ) -> dict[str, np.ndarray]:
  """{"ids", "captions", "text", "motion"} of the clips, for --embeddings_out.

  With crop="none" each clip's first caption and whole clip (deterministic); with
  "protocol", a random caption and crop drawn from `seed`.
  """
  rng = np.random.default_rng(seed)
  texts, motions, captions = embed_pass(Embedder(evaluator), clips, rng, crop, first_caption=crop == "none")
  return {"ids": np.array([c.clip_id for c in clips]), "captions": np.array(captions),
          "text": texts.astype(np.float32), "motion": motions.astype(np.float32)}
