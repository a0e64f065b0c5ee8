"""A fake `gs://` for tests: object-store paths served from a local folder, so code that
assumes a local disk (pathlib, open(), np.load on a path string, `.resolve()`) fails.

etils.epath sends `gs://BUCKET/KEY` to this backend, which stores it at
ROOT/gs:/BUCKET/KEY. orbax reaches GCS through TensorStore, not epath: its two GCS hooks
(the kvstore spec and the hierarchical-namespace bucket check, which needs
google-cloud-storage) are pointed at the same folder. TensorFlow's own GCS filesystem
(TensorBoard writers, tf.io.gfile) is not faked: nothing here reaches it.
"""
import contextlib
import os
import pathlib
from typing import Iterator
from unittest import mock

from etils.epath import backend as backend_lib
from etils.epath import gpath
from orbax.checkpoint._src.path import gcs_utils


class FakeGcsBackend(backend_lib._OsPathBackend):  # pylint: disable=protected-access
  """epath's local backend with every `gs://` path mapped under `root`."""

  def __init__(self, root: pathlib.Path):
    self.root = str(root)
    self.calls = 0  # how many operations reached the fake bucket

  def local(self, path) -> str:
    path = os.fspath(path)
    if path.startswith(self.root):  # the os backend calling itself back with a mapped path
      return path
    if not path.startswith("gs://"):
      raise AssertionError(f"fake GCS got a non-gs:// path {path!r}")
    self.calls += 1
    return os.path.join(self.root, "gs:", path[len("gs://"):])

  def _uri(self, local: str) -> str:
    return "gs://" + os.path.relpath(local, os.path.join(self.root, "gs:"))

  def open(self, path, mode):
    local = self.local(path)
    if "r" not in mode:  # an object store has no folders to create first
      os.makedirs(os.path.dirname(local), exist_ok=True)
    return super().open(local, mode)

  def exists(self, path):
    return super().exists(self.local(path))

  def isdir(self, path):
    return super().isdir(self.local(path))

  def listdir(self, path):
    return super().listdir(self.local(path))

  def glob(self, path):
    return [self._uri(p) for p in super().glob(self.local(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    for d, dirs, files in super().walk(self.local(top), top_down=top_down, on_error=on_error):
      yield self._uri(d), dirs, files

  def makedirs(self, path, *, exist_ok=False, mode=0o777):
    return super().makedirs(self.local(path), exist_ok=exist_ok, mode=mode)

  def mkdir(self, path, *, exist_ok=False, mode=0o777):
    return super().mkdir(self.local(path), exist_ok=exist_ok, mode=mode)

  def rmtree(self, path):
    return super().rmtree(self.local(path))

  def remove(self, path):
    return super().remove(self.local(path))

  def rename(self, path, dst):
    return super().rename(self.local(path), self.local(dst))

  def replace(self, path, dst):
    return super().replace(self.local(path), self.local(dst))

  def copy(self, path, dst, overwrite):
    return super().copy(self.local(path), self.local(dst), overwrite)

  def stat(self, path):
    return super().stat(self.local(path))


@contextlib.contextmanager
def fake_gcs(root: pathlib.Path) -> Iterator[FakeGcsBackend]:
  """Within the context, `gs://` paths (through epath and orbax) live under `root`."""
  fake = FakeGcsBackend(root)

  def kvstore(path):
    bucket, key = gcs_utils.parse_gcs_path(path, add_trailing_slash=False)
    return {"driver": "file", "path": os.path.join(fake.root, "gs:", bucket, key)}

  with mock.patch.object(gpath, "_PREFIX_TO_BACKEND", dict(gpath._PREFIX_TO_BACKEND, gs=fake)), \
       mock.patch.object(gpath, "_is_tf_installed", lambda: False), \
       mock.patch.object(gpath, "_GCS_BACKENDS", frozenset({fake})), \
       mock.patch.object(gcs_utils, "get_kvstore_for_gcs", kvstore), \
       mock.patch.object(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False):
    yield fake
