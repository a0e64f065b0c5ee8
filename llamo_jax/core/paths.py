"""Paths a run reads and writes, local or remote (`gs://`, `s3://`), all through etils.epath.

On a pod every host reads what process 0 prepared (corpus, records, tokenizer, latents),
so those paths are usually `gs://`: code takes `epath.Path`s, reads and writes through
them, and hands the path string on only to libraries with their own remote file layer
(orbax/TensorStore, TFDS/ArrayRecord, TensorBoard). The few writers that need a local
disk (SentencePiece training, the synthetic corpus generator) write into `staged_dir`,
which uploads on success; single-file writers (matplotlib animations, PIL images,
safetensors) write through `staged_file`.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
import uuid
from typing import Iterator

import numpy as np
from etils import epath

PathLike = str | os.PathLike


def is_local(path: PathLike) -> bool:
  """Whether `path` is on a local (or mounted) filesystem, not an object store URI."""
  return "://" not in os.fspath(path)


def as_path(path: PathLike) -> pathlib.Path | epath.Path:
  """A `pathlib.Path` when local (the stdlib API, e.g. `stat().st_size`), else an `epath.Path`:
  what a writer that accepts both returns."""
  return pathlib.Path(path) if is_local(path) else epath.Path(path)


def absolute(path: PathLike) -> epath.Path:
  """`path` made absolute when local; a `gs://`-like URI as it is (`epath.Path.resolve()`
  would turn `gs://b/x` into the local `$PWD/gs:/b/x`)."""
  path = epath.Path(path)
  return path.resolve() if is_local(path) else path


def load_npy(path: PathLike) -> np.ndarray:
  """`np.load` of a `.npy` file through epath."""
  with epath.Path(path).open("rb") as f:
    return np.load(f)


def save_npy(path: PathLike, array: np.ndarray) -> None:
  """`np.save` to `path` through epath."""
  with epath.Path(path).open("wb") as f:
    np.save(f, array)


def temp_sibling(path: PathLike) -> epath.Path:
  """A fresh name beside `path` (`.NAME.tmp-XXXXXXXX`) to write into and rename into place."""
  path = epath.Path(path)
  return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"


def copy_file(source: PathLike, target: PathLike, chunk_bytes: int = 64 << 20) -> None:
  """Copies one file through epath in chunks (a multi-GB checkpoint never sits in memory whole)."""
  with epath.Path(source).open("rb") as src, epath.Path(target).open("wb") as dst:
    shutil.copyfileobj(src, dst, chunk_bytes)


def upload_tree(local_dir: PathLike, target: PathLike) -> None:
  """Copies every file under `local_dir` to the same relative path under `target`."""
  local_dir, target = epath.Path(local_dir), epath.Path(target)
  for root, _, files in os.walk(local_dir):
    rel = os.path.relpath(root, local_dir)
    out = target if rel == "." else target / rel
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
      copy_file(epath.Path(root) / name, out / name)


@contextlib.contextmanager
def staged_dir(target: PathLike) -> Iterator[epath.Path]:
  """A local directory to write `target`'s files into, for writers that need a local disk:
  `target` itself when local, else a temporary directory uploaded to `target` on success."""
  target = epath.Path(target)
  if is_local(target):
    target.mkdir(parents=True, exist_ok=True)
    yield target
    return
  with tempfile.TemporaryDirectory(prefix="llamo_stage_") as tmp:
    yield epath.Path(tmp)
    upload_tree(tmp, target)


@contextlib.contextmanager
def staged_file(target: PathLike) -> Iterator[epath.Path]:
  """A local file name to write `target` through, for writers that need a local file:
  `staged_dir` of its folder, under the same name (writers pick the format by the suffix);
  nothing is uploaded when the writer raises."""
  target = epath.Path(target)
  with staged_dir(target.parent) as folder:
    yield folder / target.name
