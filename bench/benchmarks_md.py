"""Writes one benchmark's section of BENCHMARKS.md, between its own markers, leaving the rest."""
import pathlib

PATH = pathlib.Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, text: str) -> pathlib.Path:
  """Replaces the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` (appended if absent)."""
  start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
  doc = PATH.read_text() if PATH.exists() else "# Benchmarks\n"
  block = f"{start}\n{text.rstrip()}\n{end}"
  if start in doc and end in doc:
    doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
  else:
    doc = doc.rstrip() + "\n\n" + block + "\n"
  PATH.write_text(doc)
  return PATH
