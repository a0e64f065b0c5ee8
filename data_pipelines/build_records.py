r"""Builds a motion dataset (TFDS, ArrayRecord files) from a HumanML3D-layout or Motion-X-style folder.

  python -m data_pipelines.build_records --source=data/synthetic --out=data/records \
      [--source_format=humanml3d|motionx] [--representation=hml263|mm272] [--name=NAME] \
      [--min_len=40] [--fps=F] [--mirror] [--overwrite]

writes OUT/NAME/ (NAME defaults to `<source folder>_<representation>`), the layout
described in llamo_jax/data/records.py (built by llamo_jax/data/record_builder.py), and prints the build report: written
examples per split and skipped examples per split and reason (the skipped IDs are
listed in OUT/NAME/build_report.json). Statistics come from the source folder's
Mean/Std files when present, else from the train split (std floored at 1e-4).
The dataset is written to a temporary folder beside OUT/NAME and moved into place
at the end, so a failure leaves nothing half-written; an existing OUT/NAME is only
replaced with --overwrite.
"""
from __future__ import annotations

import pathlib
import sys
from typing import Sequence

from absl import app
from absl import flags

from llamo_jax.data import record_builder
from llamo_jax.data import sources
from llamo_jax.motion import representation as representation_lib

_SOURCE = flags.DEFINE_string("source", None, "Source folder (required).")
_SOURCE_FORMAT = flags.DEFINE_enum("source_format", "humanml3d", sorted(sources.SOURCE_FORMATS),
                                   "Layout of the source folder.")
_REPRESENTATION = flags.DEFINE_enum("representation", "hml263", sorted(representation_lib.NAMES),
                                    "Feature representation to read.")
_OUT = flags.DEFINE_string("out", None, "Parent folder of the dataset (required).")
_NAME = flags.DEFINE_string("name", None, "Dataset name (default <source>_<representation>).")
_MIN_LEN = flags.DEFINE_integer("min_len", 40, "Minimum clip length in frames.")
_FPS = flags.DEFINE_float("fps", None, "Frame rate (default: corpus.json / the representation's).")
_SPLITS = flags.DEFINE_list("splits", None, "Splits to write (default: every SPLIT.txt present).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset.")
_MIRROR = flags.DEFINE_bool("mirror", False, "Also write the left/right mirror of every train clip (M<id>).")


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    summary = record_builder.build_records(
        _SOURCE.value, _OUT.value, source_format=_SOURCE_FORMAT.value, representation=_REPRESENTATION.value,
        name=_NAME.value, min_len=_MIN_LEN.value, fps=_FPS.value, splits=_SPLITS.value,
        overwrite=_OVERWRITE.value, mirror=_MIRROR.value)
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    sys.exit(f"build_records: error: {e}")
  print(record_builder.format_report(summary))
  print(f"wrote {pathlib.Path(_OUT.value) / summary['name']}")


if __name__ == "__main__":
  # Required only as a program, so the module can be imported by other absl programs.
  flags.mark_flags_as_required(["source", "out"])
  app.run(main)
