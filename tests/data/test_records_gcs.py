"""Records on gs://: a source folder read and a record dataset built and opened through a fake
bucket (tests/fake_gcs.py), so no step of the data path treats a gs:// path as a local file."""
import numpy as np
from etils import epath

import motion_folder
from fake_gcs import fake_gcs
from llamo_jax.core import paths
from llamo_jax.data import prepare
from llamo_jax.data import records


def test_build_and_open_records_on_gcs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  split_ids = motion_folder.make_folder(tmp_path / "src", num_clips=8)
  bucket = tmp_path / "bucket"
  with fake_gcs(bucket):
    paths.upload_tree(tmp_path / "src", "gs://b/corpus")
    target = prepare.ensure_records(epath.Path("gs://b/corpus"), "gs://b/records/motion", "hml263")
    assert str(target) == "gs://b/records/motion"
    ds = records.open_dataset("gs://b/records/motion")
    assert ds.split_sizes["train"] > 0 and ds.dim == 263 and str(ds.path) == "gs://b/records/motion"
    np.testing.assert_array_equal(ds.mean, np.load(tmp_path / "src" / "Mean.npy"))
    assert not list(epath.Path("gs://b/records").glob(".*"))  # no temporary folder left behind
  # ArrayRecord opens gs:// through its own GCS client, not epath: read the shards where the fake keeps them.
  local = records.open_dataset(bucket / "gs:" / "b" / "records" / "motion")
  assert len(local.data_source("train")) == local.split_sizes["train"]
  ids = {records.decode(local.data_source("train")[i])["source_id"] for i in range(len(local.data_source("train")))}
  assert ids <= set(split_ids["train"])
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
