"""The evaluator task end to end on a tiny synthetic corpus: a few steps of guo and tmr, the
in-training R-precision, load_evaluator and its input checks."""
import json

import numpy as np
import pytest

from llamo_jax import tasks
from llamo_jax.data import records
from llamo_jax.tasks import evaluator as evaluator_lib
from helpers import load_config, scalars, tags


def tiny_config(root, arg, rep_fps):
  config = load_config("evaluator", arg)
  config.data.corpus.dir = str(root / f"corpus_{rep_fps}")
  config.data.corpus.num_motions = 24
  config.data.corpus.processes = 1
  config.data.path = str(root / f"records_{config.data.representation}")
  config.data.batch_size = 8
  config.data.max_len = 48
  config.mesh = {"data": 8, "fsdp": 1, "tensor": 1}
  config.total_steps = 3
  config.log_every = 1
  config.eval_every = 3
  config.eval_split = "train"
  config.eval_repeats = 2
  config.checkpoint_every = 3
  config.optimizer.warmup_steps = 1
  return config


@pytest.mark.parametrize("arg,fps,dims", [
    ("guo_tiny", 20, 263),
    pytest.param("tmr_tiny,rep=mm272", 30, 272, marks=pytest.mark.slow),  # the same path; ~30 s more
])
def test_train_then_load_evaluator(tmp_path_factory, arg, fps, dims):
  root = tmp_path_factory.mktemp("evaluator")
  workdir = root / "run"
  final = tasks.train_and_evaluate(tiny_config(root, arg, fps), workdir)
  assert np.isfinite(final["loss"]) and sorted(scalars(workdir, "train/loss")) == [1, 2, 3]
  assert {"eval/r_precision_top1", "eval/r_precision_top3"} <= tags(workdir)
  top3 = scalars(workdir, "eval/r_precision_top3")[3]
  assert 0.0 <= top3 <= 1.0

  evaluator = evaluator_lib.load_evaluator(workdir)
  assert (evaluator.representation, evaluator.unit_length, evaluator.max_motion_length) == (
      "mm272" if dims == 272 else "hml263", 4, 196)
  source = records.open_dataset(root / f"records_{evaluator.representation}").data_source("train")
  clips = [records.decode(source[i]) for i in range(3)]
  texts = [c["captions"][0] for c in clips]
  motions = [c["features"] for c in clips]
  t, m = evaluator.encode_texts(texts), evaluator.encode_motions(motions)
  assert t.shape == m.shape == (3, evaluator.dim) and np.isfinite(t).all() and np.isfinite(m).all()
  # One clip alone embeds as it does in a batch; beyond 196 frames is cut off.
  np.testing.assert_allclose(evaluator.encode_motions(motions[1:2]), m[1:2], atol=1e-5)
  long = np.concatenate([motions[0]] * 5)[:260]
  np.testing.assert_allclose(evaluator.encode_motions([long]), evaluator.encode_motions([long[:196]]), atol=1e-5)
  # The split R-precision (what the report measures) runs on the same evaluator.
  result = evaluator_lib.split_r_precision(evaluator, str(root / f"records_{evaluator.representation}"), "train",
                                           repeats=2)
  assert 0.0 <= result["top1"]["mean"] <= result["top3"]["mean"] <= 1.0

  with pytest.raises(ValueError, match=rf"motion 0 has shape \(50, {dims - 1}\).*\[T, {dims}\]"):
    evaluator.encode_motions([np.zeros((50, dims - 1))])
  with pytest.raises(ValueError, match="motion 1 has NaN"):
    evaluator.encode_motions([motions[0], np.full((40, dims), np.nan)])
  with pytest.raises(ValueError, match="motion 0 has 3 frames"):
    evaluator.encode_motions([motions[0][:3]])


def test_load_evaluator_refuses_other_folders(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    evaluator_lib.load_evaluator(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match="neither an evaluator training workdir"):
    evaluator_lib.load_evaluator(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps({"task": "motion_vae"}))
  with pytest.raises(ValueError, match="is a 'motion_vae' run, not a 'evaluator' run"):
    evaluator_lib.load_evaluator(tmp_path)


def test_tagger_and_text_arrays():
  assert evaluator_lib.tag_caption("A person walks forward, then waves!") == [
      ("a", "DET"), ("person", "NOUN"), ("walk", "VERB"), ("forward", "ADV"), ("then", "ADV"), ("wave", "VERB")]
  # Words outside the synthetic grammar: closed classes and suffix rules; digits are numbers.
  assert evaluator_lib.tag_caption("the dancer gracefully twirling 3 times") == [
      ("the", "DET"), ("dancer", "NOUN"), ("gracefully", "ADV"), ("twirl", "VERB"), ("3", "NUM"),
      ("time", "NOUN")]
  assert evaluator_lib.tag_caption("man/NOUN walk/VERB") == [("man", "NOUN"), ("walk", "VERB")]
  vocab = evaluator_lib.build_vocabulary(["a person walks", "a man walks left"])
  assert vocab[:3] == ["sos", "eos", "unk"] and vocab[3:5] == ["a", "walk"]
  index = {w: i for i, w in enumerate(vocab)}
  words, pos, lengths = evaluator_lib.guo_text_arrays(["a man walks left quickly", " ".join(["walk"] * 30)], index)
  assert words.shape == (2, 22) and list(lengths) == [7, 22]
  # sos a man walk left quickly(unknown -> unk/OTHER) eos, then unk padding
  assert [vocab[i] for i in words[0, :7]] == ["sos", "a", "man", "walk", "left", "unk", "eos"]
  slots = evaluator_lib.POS_ENUMERATOR
  assert list(pos[0, :7]) == [slots["OTHER"], slots["DET"], slots["NOUN"], slots["Act_VIP"], slots["Loc_VIP"],
                              slots["OTHER"], slots["OTHER"]]
