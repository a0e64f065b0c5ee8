"""First-use data preparation and the synthetic generator version: an older corpus is used with a
warning, records out of step with their corpus are refused with what to delete."""
import json
import logging

import ml_collections
import pytest
from etils import epath

import motion_folder
from llamo_jax.data import prepare
from llamo_jax.data import records
from llamo_jax.synthetic import corpus as corpus_lib


def _stamp(folder, version):
  (folder / "corpus.json").write_text(json.dumps({"version": version, "fps": 20}))


def test_a_corpus_of_another_generator_version_is_used_with_a_warning(tmp_path, caplog):
  """Runs trained on an older corpus still evaluate on it; the warning says how to renew it."""
  motion_folder.make_folder(tmp_path / "corpus", num_clips=4)
  _stamp(tmp_path / "corpus", corpus_lib.VERSION - 1)
  before = sorted(p.name for p in (tmp_path / "corpus").iterdir())
  cfg = ml_collections.ConfigDict(dict(dir=str(tmp_path / "corpus"), num_motions=4, seed=0, fps=20))
  with caplog.at_level(logging.WARNING):
    assert prepare.ensure_synthetic_corpus(cfg) == epath.Path(tmp_path / "corpus")
  assert f"generator version {corpus_lib.VERSION - 1}" in caplog.text and "delete" in caplog.text
  assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == before  # nothing rebuilt or removed


def test_records_remember_their_corpus_version(tmp_path):
  motion_folder.make_folder(tmp_path / "corpus", num_clips=8)
  _stamp(tmp_path / "corpus", corpus_lib.VERSION)
  target = prepare.ensure_records(epath.Path(tmp_path / "corpus"), str(tmp_path / "rec"), "hml263")
  assert records.open_dataset(target).corpus_version == corpus_lib.VERSION
  _stamp(tmp_path / "corpus", corpus_lib.VERSION + 1)  # the corpus was rebuilt by a newer generator
  with pytest.raises(ValueError, match=f"built from synthetic corpus version {corpus_lib.VERSION}.*delete"):
    prepare.ensure_records(epath.Path(tmp_path / "corpus"), str(tmp_path / "rec"), "hml263")
  (tmp_path / "corpus" / "corpus.json").unlink()  # a folder that is not a synthetic corpus: no check
  assert prepare.ensure_records(epath.Path(tmp_path / "corpus"), str(tmp_path / "rec"), "hml263") == target
