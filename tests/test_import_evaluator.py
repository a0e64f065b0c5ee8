"""import_evaluator: the released HumanML3D evaluator layout (random weights from a PyTorch
re-implementation of the published modules) converts to embeddings equal to PyTorch's."""
import os
import pickle

import jax
import numpy as np
import pytest
from flax import nnx

from fake_gcs import fake_gcs
from llamo_jax.core import paths

torch = pytest.importorskip("torch", reason="the import-parity test needs torch (pip install -e \".[torch]\")")

from llamo_jax import import_evaluator  # pylint: disable=g-import-not-at-top  (after the importorskip above)
from llamo_jax.tasks.evaluator import load_evaluator  # pylint: disable=g-import-not-at-top
from models import guo_evaluator_torch as ref  # pylint: disable=g-import-not-at-top

WORDS = ["sos", "eos", "unk", "a", "the", "man", "person", "walk", "forward", "left", "turn", "hand", "raise",
         "slowly", "and", "then", "jump", "twice", "circle", "kick", "leg", "right", "chair", "sit", "down"]
TEXTS = [
    "a/DET man/NOUN walk/VERB forward/ADV",
    "the/DET person/NOUN raise/VERB the/DET left/ADJ hand/NOUN slowly/ADV",
    "a/DET person/NOUN jump/VERB twice/ADV and/CCONJ then/ADV turn/VERB left/ADV",
    "someone/PRON cartwheel/VERB across/ADP the/DET room/NOUN",  # unknown words -> unk/OTHER
    " ".join(["a/DET man/NOUN walk/VERB in/ADP a/DET circle/NOUN and/CCONJ kick/VERB"] * 4),  # > 20 tokens
    "sit/VERB down/ADP on/ADP the/DET chair/NOUN",
    "kick/VERB",
]
LENGTHS = [196, 40, 64, 120, 196, 84, 200]  # multiples of 4 (as the released loader cuts them) and one > 196


def _released_layout(root, sizes, seed=0):
  """Random released-layout evaluator files under root/source and root/glove; returns the torch wrapper."""
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  word, mov_hidden, mov_latent, text_hidden, motion_hidden, embed = sizes
  movement = ref.MovementConvEncoder(259, mov_hidden, mov_latent)
  text = ref.TextEncoderBiGRUCo(word, len(ref.POS_ENUMERATOR), text_hidden, embed)
  motion = ref.MotionEncoderBiGRUCo(mov_latent, motion_hidden, embed)
  (root / "source/text_mot_match/model").mkdir(parents=True)
  torch.save({"movement_encoder": movement.state_dict(), "text_encoder": text.state_dict(),
              "motion_encoder": motion.state_dict(), "epoch": 7, "iter": 100},
             root / "source/text_mot_match/model/finest.tar")
  (root / "source/Comp_v6_KLD01/meta").mkdir(parents=True)
  mean = rng.normal(size=263).astype(np.float32)
  std = rng.uniform(0.5, 2.0, size=263).astype(np.float32)
  np.save(root / "source/Comp_v6_KLD01/meta/mean.npy", mean)
  np.save(root / "source/Comp_v6_KLD01/meta/std.npy", std)
  (root / "glove").mkdir()
  rows = rng.permutation(len(WORDS))
  vectors = rng.normal(size=(len(WORDS), word)).astype(np.float32)
  np.save(root / "glove/our_vab_data.npy", vectors)
  with open(root / "glove/our_vab_words.pkl", "wb") as f:
    pickle.dump(WORDS, f)
  with open(root / "glove/our_vab_idx.pkl", "wb") as f:
    pickle.dump({w: int(r) for w, r in zip(WORDS, rows)}, f)
  vectorizer = ref.WordVectorizer(vectors, WORDS, {w: int(r) for w, r in zip(WORDS, rows)})
  return ref.EvaluatorWrapper(movement, text, motion), vectorizer, mean, std


def _torch_embeddings(wrapper, vectorizer, mean, std, motions):
  """(text, motion) embeddings [N, E] as the released evaluation computes them (rows in input order)."""
  items = [ref.text_inputs(t.split(" "), vectorizer) for t in TEXTS]
  padded = np.zeros((len(motions), 196, 263), np.float32)
  for i, m in enumerate(motions):
    m = m[:196]
    padded[i, :len(m)] = (m - mean) / std
  lens = np.array([min(len(m), 196) for m in motions])
  # The released DataLoader's collate sorts a batch by caption length, longest first.
  order = np.argsort([-it[2] for it in items], kind="stable")
  word = torch.tensor(np.stack([items[i][0] for i in order]))
  pos = torch.tensor(np.stack([items[i][1] for i in order]))
  cap = torch.tensor([items[i][2] for i in order])
  t_emb, m_emb, align = wrapper.get_co_embeddings(word, pos, cap, torch.tensor(padded[order]),
                                                  torch.tensor(lens[order]))
  rows = order[align]  # input row of each output row
  text_out, motion_out = np.zeros_like(t_emb.numpy()), np.zeros_like(m_emb.numpy())
  text_out[rows], motion_out[rows] = t_emb.numpy(), m_emb.numpy()
  return text_out, motion_out


@pytest.mark.parametrize("sizes", [pytest.param((300, 64, 48, 40, 56, 32), id="small"),
                                   pytest.param((300, 512, 512, 512, 1024, 512), id="released",
                                                marks=pytest.mark.slow)])
def test_imported_embeddings_equal_pytorch(tmp_path, sizes):
  wrapper, vectorizer, mean, std = _released_layout(tmp_path, sizes)
  rng = np.random.default_rng(1)
  motions = [(mean + std * rng.normal(size=(n, 263))).astype(np.float32) for n in LENGTHS]
  want_text, want_motion = _torch_embeddings(wrapper, vectorizer, mean, std, motions)

  out = import_evaluator.import_evaluator(tmp_path / "source", tmp_path / "glove", tmp_path / "out")
  evaluator = load_evaluator(out)
  assert (evaluator.kind, evaluator.representation, evaluator.unit_length, evaluator.max_motion_length) == (
      "guo", "hml263", 4, 196)
  np.testing.assert_allclose(evaluator.encode_texts(TEXTS), want_text, atol=1e-4, rtol=0)
  np.testing.assert_allclose(evaluator.encode_motions(motions), want_motion, atol=1e-4, rtol=0)
  # The padding after normalisation reaches the last latents: other padding would change them.
  assert np.abs(want_motion).max() > 1e-2
  # A raw caption goes through the tagger to the same tokens.
  np.testing.assert_allclose(evaluator.encode_texts(["a man walks forward"]), want_text[:1], atol=1e-4, rtol=0)


def test_import_evaluator_reads_and_writes_gcs_and_a_failure_leaves_nothing(tmp_path, monkeypatch):
  """--source, --glove and --out on gs:// (a fake bucket only epath reaches): loads from gs:// with the same
  weights and statistics as a local import; an import failing mid-write keeps the evaluator already there
  and leaves no temporary folder."""
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would be looked up under ./gs:
  _released_layout(tmp_path, (300, 8, 8, 8, 8, 8))
  local = load_evaluator(import_evaluator.import_evaluator(tmp_path / "source", tmp_path / "glove", tmp_path / "out"))
  bucket = tmp_path / "bucket" / "gs:" / "b"
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(tmp_path / "source", "gs://b/source")
    paths.upload_tree(tmp_path / "glove", "gs://b/glove")
    out = import_evaluator.import_evaluator("gs://b/source", "gs://b/glove", "gs://b/evaluator")
    assert str(out) == "gs://b/evaluator"
    remote = load_evaluator("gs://b/evaluator")
    with pytest.raises(FileExistsError, match="--overwrite"):
      import_evaluator.import_evaluator("gs://b/source", "gs://b/glove", "gs://b/evaluator")

    def half_written(model, path):
      raise ValueError("disk full")

    monkeypatch.setattr(import_evaluator.evaluator_lib, "load_params", half_written)
    for target in ("gs://b/evaluator", "gs://b/failed"):
      with pytest.raises(ValueError, match="disk full"):
        import_evaluator.import_evaluator("gs://b/source", "gs://b/glove", target, overwrite=True)
  assert (remote.kind, remote.representation, remote.source) == ("guo", "hml263", "gs://b/evaluator")
  np.testing.assert_array_equal(remote.mean, local.mean)
  np.testing.assert_array_equal(remote.std, local.std)
  want, got = (jax.tree.leaves(nnx.state(e.model, nnx.Param)) for e in (local, remote))
  assert len(want) == len(got) > 0
  for a, b in zip(want, got):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert os.listdir(bucket / "evaluator") == ["evaluator"]  # the old import intact, no temporary folder
  assert sorted(os.listdir(bucket / "evaluator" / "evaluator")) == sorted(os.listdir(tmp_path / "out" / "evaluator"))
  assert not (bucket / "failed").exists() or os.listdir(bucket / "failed") == []  # a local mkdir of the fake bucket
  assert not (tmp_path / "gs:").exists()


def test_import_errors_name_the_problem(tmp_path):
  _released_layout(tmp_path, (300, 8, 8, 8, 8, 8))
  with pytest.raises(FileNotFoundError, match="our_vab_idx.pkl"):
    (tmp_path / "glove/our_vab_idx.pkl").rename(tmp_path / "idx.pkl")
    import_evaluator.import_evaluator(tmp_path / "source", tmp_path / "glove", tmp_path / "out")
  (tmp_path / "idx.pkl").rename(tmp_path / "glove/our_vab_idx.pkl")
  with pytest.raises(FileNotFoundError, match="Comp_v6_KLD01/meta/mean.npy not found"):
    import_evaluator.import_evaluator(tmp_path, tmp_path / "glove", tmp_path / "out")
  checkpoint = tmp_path / "source/text_mot_match/model/finest.tar"
  checkpoint.rename(tmp_path / "finest.tar")
  with pytest.raises(FileNotFoundError, match="finest.tar not found"):
    import_evaluator.import_evaluator(tmp_path / "source", tmp_path / "glove", tmp_path / "out")
  torch.save({"text_encoder": {}}, tmp_path / "source/text_mot_match/model/finest.tar")
  with pytest.raises(import_evaluator.ConversionError, match="no 'movement_encoder' state dict"):
    import_evaluator.import_evaluator(tmp_path / "source", tmp_path / "glove", tmp_path / "out")
  assert not (tmp_path / "out/evaluator").exists()
