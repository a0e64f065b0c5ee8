"""sample's outputs and inputs on gs:// (a fake bucket only epath reaches), with a stand-in task:
what a run on a pod does with `--workdir=gs://... --out=gs://... --motion=gs://...`."""
import numpy as np
from PIL import Image

from fake_gcs import fake_gcs
from llamo_jax import sample
from llamo_jax.core import paths
from llamo_jax.motion import representation as representation_lib
from tests.motion.walking_clip import walking_joints

FRAMES = 8


class _Task:
  """The two calls sample makes on a LLaMo task, answering with a fixed walking clip."""
  representation = representation_lib.get_representation("hml263")

  def sample_motions(self, model, prompts, key, **overrides):
    del model, key, overrides
    joints = [walking_joints(FRAMES) for _ in prompts]
    feats = [np.asarray(self.representation.from_joints(j), np.float32) for j in joints]
    return feats, joints, [FRAMES // 4] * len(prompts)

  def caption_features(self, model, features):
    del model
    self.captioned = features
    return "a person walks."


def test_text_to_motion_and_caption_read_and_write_gcs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  task = _Task()
  with fake_gcs(tmp_path / "bucket"):
    summary = sample.text_to_motion(task, None, ["a person walks."], "gs://b/run/samples/cli_step3", seed=0,
                                    render_format="gif")
    paths.save_npy("gs://b/clips/walk.npy", walking_joints(FRAMES))
    caption = sample.caption_file(task, None, "gs://b/clips/walk.npy")
  out = tmp_path / "bucket" / "gs:" / "b" / "run" / "samples" / "cli_step3"
  assert sorted(p.name for p in out.iterdir()) == ["t2m_0.bvh", "t2m_0.gif", "t2m_0.npy", "t2m_0_features.npy"]
  np.testing.assert_array_equal(np.load(out / "t2m_0.npy"), walking_joints(FRAMES))
  assert np.load(out / "t2m_0_features.npy").shape[1] == 263
  assert (out / "t2m_0.bvh").read_text().startswith("HIERARCHY")
  with Image.open(out / "t2m_0.gif") as gif:
    assert gif.n_frames == FRAMES
  assert summary == [{"prompt": "a person walks.", "frames": FRAMES, "latents": FRAMES // 4,
                      "file": "gs://b/run/samples/cli_step3/t2m_0.npy"}]
  assert caption == "a person walks." and task.captioned.shape[1] == 263  # joints became the VAE's features
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
