"""Markdown tables of evaluation results, in the column order the field's papers use.

T2M (HumanML3D tables): R-precision top-1, top-2, top-3 (higher is better), FID (lower),
MM-Dist (lower), Diversity (closest to the real motions'), MultiModality (higher), each
"mean ± ci95". M2T: BLEU@1, BLEU@4, ROUGE-L, CIDEr, BERTScore, x100 as the papers print
them; a metric that was not computed shows "n/c" (never 0). Input rows are the dicts of
eval/t2m_protocol.py and eval/text_metrics.py. Agreement with the text on synthetic corpora
(eval/action_checks.py): attribute accuracy per segment and per clip, generated lengths within
+-25% of the reference, and accuracy per action.
"""
from __future__ import annotations

T2M_COLUMNS = (("R@1 ↑", ("r_precision", "top1")), ("R@2 ↑", ("r_precision", "top2")),
               ("R@3 ↑", ("r_precision", "top3")), ("FID ↓", ("fid",)), ("MM-Dist ↓", ("mm_dist",)),
               ("Diversity →", ("diversity",)), ("MModality ↑", ("multimodality",)))
M2T_COLUMNS = (("BLEU@1", "bleu1"), ("BLEU@4", "bleu4"), ("ROUGE-L", "rouge_l"), ("CIDEr", "cider"),
               ("BERTScore", "bertscore"))
NOT_COMPUTED = "n/c"


def _cell(metrics: dict, path: tuple[str, ...]) -> str:
  value = metrics
  for key in path:
    if not isinstance(value, dict) or key not in value:
      return NOT_COMPUTED
    value = value[key]
  return f"{value['mean']:.3f} ± {value['ci95']:.3f}"


def t2m_table(rows: dict[str, dict]) -> str:
  """rows: {row name: T2M metrics} -> a markdown table."""
  lines = ["| | " + " | ".join(name for name, _ in T2M_COLUMNS) + " |",
           "|---|" + "---:|" * len(T2M_COLUMNS)]
  for row, metrics in rows.items():
    lines.append(f"| {row} | " + " | ".join(_cell(metrics, path) for _, path in T2M_COLUMNS) + " |")
  return "\n".join(lines) + "\n"


def m2t_table(rows: dict[str, dict]) -> str:
  """rows: {row name: M2T metrics (fractions)} -> a markdown table, x100."""
  lines = ["| | " + " | ".join(name for name, _ in M2T_COLUMNS) + " |",
           "|---|" + "---:|" * len(M2T_COLUMNS)]
  for row, metrics in rows.items():
    cells = [f"{100 * metrics[key]:.2f}" if key in metrics else NOT_COMPUTED for _, key in M2T_COLUMNS]
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def agreement_table(rows: dict[str, dict]) -> str:
  """rows: {row name: {"attributes": {split: attribute_accuracy}, "length": length_agreement}} -> markdown,
  one line per row and split, then accuracy per action and per check (the attribute checked; percent)."""
  lines = ["| | split | segments | clips | length within 25% | per action | per check |",
           "|---|---|---:|---:|---:|---|---|"]

  def groups(acc, name):
    return ", ".join(f"{k} {100 * v['accuracy']:.0f} ({v['count']})" for k, v in acc.get(name, {}).items())

  for row, entry in rows.items():
    for split, acc in entry.get("attributes", {}).items():
      length = entry.get("length", {}).get("within") if split != "zeroshot" else None
      lines.append(f"| {row} | {split} | {100 * acc['segments']:.1f} | {100 * acc['clips']:.1f} | "
                   f"{NOT_COMPUTED if length is None else f'{100 * length:.1f}'} | {groups(acc, 'per_action')} | "
                   f"{groups(acc, 'per_check')} |")
  return "\n".join(lines) + "\n"
