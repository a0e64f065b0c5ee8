"""Writes one benchmark's section of BENCHMARKS.md, between its own markers, leaving the rest.

Importing it puts this checkout first on sys.path, so a bench imported after it measures the
llamo_jax beside it rather than an installed copy.
"""
import os
import pathlib
import platform
import sys
from typing import Sequence

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))
PATH = REPO / "BENCHMARKS.md"


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


def publish(name: str, title: str, intro: str, columns: Sequence[str], rows: Sequence[str],
            write: bool = True) -> str:
  """Prints the standard section (title, intro, machine and load, table of `rows`) and, if
  `write`, writes it as section `name`; returns its text."""
  load = os.getloadavg()
  table = "\n".join([
      f"## {title}", "", intro, "",
      f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average at the end {load[0]:.1f}.", "",
      "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *rows,
  ])
  print(table)
  if write:
    print(f"wrote {write_section(name, table)}")
  return table
