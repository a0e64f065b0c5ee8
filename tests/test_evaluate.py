"""evaluate --motion with gs:// paths (a fake bucket only epath reaches), with a stand-in VAE task."""
import json

import numpy as np
from PIL import Image

from fake_gcs import fake_gcs
from llamo_jax import evaluate
from llamo_jax.core import paths
from llamo_jax.motion import representation as representation_lib
from tests.motion.walking_clip import walking_joints


class _Task:
  """What evaluate_motion uses of a motion-VAE task; the 'reconstruction' is the input shifted 1 cm."""
  representation = representation_lib.get_representation("hml263")
  mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)

  def reconstruct_joints(self, model, features, lengths):
    del model
    targets = np.asarray(self.representation.to_joints(features[0, :int(lengths[0])]))[None]
    return targets + 0.01, targets


def test_evaluate_motion_reads_and_writes_gcs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with fake_gcs(tmp_path / "bucket"):
    paths.save_npy("gs://b/clips/walk.npy", walking_joints(13))
    result = evaluate.evaluate_motion(_Task(), None, "gs://b/clips/walk.npy", "gs://b/run", "png")
  json.dumps(result)
  assert result["frames"] == 12 and result["rendered"] == "gs://b/run/recon_walk.png"
  assert result["motion"] == "gs://b/clips/walk.npy"
  with Image.open(tmp_path / "bucket" / "gs:" / "b" / "run" / "recon_walk.png") as image:
    assert image.size[0] > 0
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
