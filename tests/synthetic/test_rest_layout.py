"""The rig's rest layouts: "human" puts hips below the pelvis and collars above spine3 at the same
bone lengths, leaves the motion's plausibility as it was, and "target" stays the default."""
import ml_collections
import numpy as np
import pytest

from llamo_jax.data import prepare
from llamo_jax.data import sources
from llamo_jax.motion import rep272
from llamo_jax.motion import skeleton
from llamo_jax.synthetic import corpus
from llamo_jax.synthetic import rig


def _elevation(v):
  """Degrees above the horizontal of vectors [..., 3]."""
  return np.degrees(np.arcsin(v[..., 1] / np.linalg.norm(v, axis=-1)))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_human_layout_moves_hips_and_collars_only(index):
  target = corpus.generate(index, corpus.Config(num_motions=3, seed=0))
  human = corpus.generate(index, corpus.Config(num_motions=3, seed=0, layout="human"))
  assert human.captions == target.captions  # same program, other body
  j = human.clip.joints
  bones = np.linalg.norm(j[:, 1:] - j[:, list(skeleton.PARENTS[1:])], axis=-1)
  np.testing.assert_allclose(bones, np.broadcast_to(skeleton.BONE_LENGTHS[1:], bones.shape), atol=1e-5)
  assert j[..., 1].min() > -1e-6  # nothing below the floor
  # Upright frames: hips about 54 degrees below the pelvis, collars about 52 above spine3 (the
  # target layout has both level).
  hips = _elevation(j[:, [1, 2]] - j[:, [0]])
  collars = _elevation(j[:, [13, 14]] - j[:, [9]])
  assert np.median(hips) < -35 and np.median(collars) > 35
  assert abs(np.median(_elevation(target.clip.joints[:, [1, 2]] - target.clip.joints[:, [0]]))) < 15
  # The 272 features place joints with the layout's own offsets (the joints of the clip).
  np.testing.assert_allclose(
      human.feats272, rep272.from_rotations(human.clip.local_quats, human.clip.root_pos,
                                            rig.rest_offsets("human")), atol=1e-6)
  assert not np.allclose(human.feats272, rep272.from_rotations(human.clip.local_quats,
                                                               human.clip.root_pos), atol=1e-3)


def test_layout_is_scoped_and_validated():
  assert rig.body().offsets[1, 1] == 0.0  # target by default
  with rig.rest_layout("human"):
    assert rig.body().offsets[1, 1] < 0
  assert rig.body().offsets[1, 1] == 0.0
  with pytest.raises(ValueError, match="unknown rest layout 'tall'"):
    corpus.build("/nonexistent/never_written", corpus.Config(num_motions=1, layout="tall"))


def test_prepare_refuses_a_corpus_of_another_layout(tmp_path):
  corpus.build(tmp_path / "human", corpus.Config(num_motions=8, seed=0, layout="human"))
  assert sources.synthetic_corpus_build(tmp_path / "human") == {"action_set": "core", "layout": "human"}
  asked = ml_collections.ConfigDict(dict(dir=str(tmp_path / "human"), num_motions=8, seed=0, fps=20))
  with pytest.raises(ValueError, match="built with layout 'human'.*data.corpus.layout='target'"):
    prepare.ensure_synthetic_corpus(asked)
  asked.layout = "human"
  assert prepare.ensure_synthetic_corpus(asked) == tmp_path / "human"
