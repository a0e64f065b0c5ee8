"""Motion-to-text caption metrics: BLEU-1/4, ROUGE-L, CIDEr and (with a local model) BERTScore.

Every system's captions and references go through one normalisation,
`normalize_caption`, before scoring: lower case, every character that is not a letter,
digit or apostrophe becomes a space, whitespace collapses to single spaces (so
"The person walks, then jumps." -> "the person walks then jumps"). The peers' tools
differ here (coco-caption's PTB tokenizer, nlg-eval, plain split), and scores move with
it; this is the one used for every row of our tables.

  bleu1, bleu4  corpus BLEU over all clips with all references (coco-caption's Bleu:
                clipped n-gram counts, closest reference length for the brevity penalty).
  rouge_l       ROUGE-L F-measure (rouge-score), best reference per clip, mean over clips.
  cider         CIDEr-D (coco-caption's Cider: tf-idf n-grams 1..4, clipping, Gaussian
                length penalty sigma 6, x10); document frequencies from this set's references.
  bertscore     F1 of greedy cosine matching of contextual token embeddings (last layer of
                the model in a local directory, no idf weighting, no baseline rescaling), best
                reference per clip, mean over clips. Only with a model directory: without one
                it is not computed (absent, never 0). Needs the torch extra.

Scores are fractions (BLEU and ROUGE-L in [0, 1], CIDEr on coco-caption's scale, 10 for
a perfect match); tables in the literature show them x100.
"""
from __future__ import annotations

import contextlib
import io
import re
from typing import Sequence

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from rouge_score import rouge_scorer

_NOT_WORD = re.compile(r"[^a-z0-9']+")


def normalize_caption(text: str) -> str:
  """The one caption normalisation (module docstring)."""
  return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} captions but {len(references)} reference lists; give one per clip.")
  if not predictions:
    raise ValueError("No captions to score.")
  for i, refs in enumerate(references):
    if isinstance(refs, str) or not refs:
      raise ValueError(f"clip {i}: references must be a non-empty list of strings, got {refs!r}.")


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> list[float]:
  """Corpus BLEU-1..n of already normalised captions (space-separated tokens)."""
  _check(predictions, references)
  gts = {i: list(r) for i, r in enumerate(references)}
  res = {i: [p] for i, p in enumerate(predictions)}
  with contextlib.redirect_stdout(io.StringIO()):  # coco-caption prints its length ratio
    scores, _ = Bleu(n).compute_score(gts, res)
  return [float(s) for s in scores]


def cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
  """CIDEr-D of already normalised captions over the whole set."""
  _check(predictions, references)
  score, _ = Cider().compute_score({i: list(r) for i, r in enumerate(references)},
                                   {i: [p] for i, p in enumerate(predictions)})
  return float(score)


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
  """Mean over clips of the best ROUGE-L F-measure against the clip's references."""
  _check(predictions, references)
  scorer = rouge_scorer.RougeScorer(["rougeL"])
  return float(np.mean([scorer.score_multi(list(r), p)["rougeL"].fmeasure
                        for p, r in zip(predictions, references)]))


def bertscore(predictions: Sequence[str], references: Sequence[Sequence[str]], model_dir: str,
              batch_size: int = 64) -> float:
  """Mean over clips of the best BERTScore F1 against the references (module docstring)."""
  _check(predictions, references)
  try:
    import torch  # pylint: disable=g-import-not-at-top  (torch extra, only for BERTScore)
    import transformers  # pylint: disable=g-import-not-at-top  (torch extra, only for BERTScore)
  except ImportError as e:
    raise ImportError('BERTScore needs the torch extra: pip install -e ".[torch]" '
                      "(or leave --bertscore_model unset: BERTScore is then not computed).") from e
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = transformers.AutoModel.from_pretrained(model_dir).eval()
  texts = sorted(set(predictions) | {r for refs in references for r in refs})
  embedded = {}
  with torch.no_grad():
    for start in range(0, len(texts), batch_size):
      chunk = texts[start:start + batch_size]
      enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True)
      hidden = model(**enc).last_hidden_state
      hidden = torch.nn.functional.normalize(hidden, dim=-1).numpy()
      special = np.zeros(enc["input_ids"].shape, bool)
      for sid in tokenizer.all_special_ids:
        special |= enc["input_ids"].numpy() == sid
      keep = enc["attention_mask"].numpy().astype(bool) & ~special
      for text, h, k in zip(chunk, hidden, keep):
        embedded[text] = h[k] if k.any() else h[:1]

  def f1(cand: str, ref: str) -> float:
    sim = embedded[cand] @ embedded[ref].T
    p, r = sim.max(1).mean(), sim.max(0).mean()
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0

  return float(np.mean([max(f1(p, r) for r in refs) for p, refs in zip(predictions, references)]))


def m2t_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]],
                bertscore_model: str | None = None) -> dict[str, float]:
  """{"bleu1", "bleu4", "rouge_l", "cider"[, "bertscore"]} after `normalize_caption`.

  predictions: one generated caption per clip; references: each clip's reference captions.
  A caption that normalises to nothing scores as an empty caption (0 overlap), not skipped.
  """
  _check(predictions, references)
  preds = [normalize_caption(p) for p in predictions]
  refs = [[normalize_caption(r) for r in rs] for rs in references]
  b = bleu(preds, refs, 4)
  out = {"bleu1": b[0], "bleu4": b[3], "rouge_l": rouge_l(preds, refs), "cider": cider(preds, refs)}
  if bertscore_model:
    out["bertscore"] = bertscore(preds, refs, bertscore_model)
  return out
