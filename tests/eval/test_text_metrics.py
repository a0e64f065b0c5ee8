"""Caption metrics on textbook examples with known values."""
import numpy as np
import pytest

from llamo_jax.eval import text_metrics as txt

# Papineni et al. (2002) / the NLTK BLEU documentation's example.
HYPOTHESIS = ("it is a guide to action which ensures that the military always obeys the commands of "
              "the party")
REFERENCES = ["it is a guide to action that ensures that the military will forever heed party commands",
              "it is the guiding principle which guarantees the military forces always being under the "
              "command of the party",
              "it is the practical guide for the army always to heed the directions of the party"]


def test_normalisation():
  assert txt.normalize_caption("The person walks, then JUMPS!  It's done.") == "the person walks then jumps it's done"


def test_bleu_textbook_examples():
  # modified unigram precision of "the the the the the the the": 2/7 (Papineni et al., sec. 2.1)
  b1 = txt.bleu(["the the the the the the the"], [["the cat is on the mat", "there is a cat on the mat"]], 1)
  assert b1[0] == pytest.approx(2 / 7, rel=1e-6)
  # p1..p4 = 17/18, 10/17, 7/16, 4/15, brevity penalty 1 (a reference of the same length, 18)
  want = (17 / 18 * 10 / 17 * 7 / 16 * 4 / 15) ** 0.25
  assert txt.bleu([HYPOTHESIS], [REFERENCES])[3] == pytest.approx(want, rel=1e-6)
  assert want == pytest.approx(0.5046, abs=1e-4)


def test_cider_closed_forms():
  # identical captions with disjoint words: every n-gram's idf is log 2, cosine 1 per n -> 10
  refs = [["a man walks forward slowly"], ["someone jumps up high twice"]]
  assert txt.cider(["a man walks forward slowly", "someone jumps up high twice"], refs) == pytest.approx(10.0)
  # nothing shared with the references -> 0
  assert txt.cider(["zz yy xx ww", "qq rr ss tt"], refs) == pytest.approx(0.0)


def test_rouge_l_takes_the_best_reference():
  # LCS "the cat sat" of 4 vs 3 tokens: P 3/4, R 1 -> F 6/7
  got = txt.rouge_l(["the cat sat down"], [["a dog", "the cat sat"]])
  assert got == pytest.approx(6 / 7)


def test_m2t_metrics_normalises_and_leaves_bertscore_out_without_a_model():
  got = txt.m2t_metrics(["A person WALKS forward, then turns."], [["a person walks forward then turns"]])
  assert got["bleu4"] == pytest.approx(1.0) and got["rouge_l"] == pytest.approx(1.0)
  assert "bertscore" not in got
  with pytest.raises(ValueError, match="one per clip"):
    txt.m2t_metrics(["a"], [["a"], ["b"]])
  # an empty caption scores, it is not skipped
  assert txt.m2t_metrics(["!!!", "a person walks"], [["a person runs"], ["a person walks"]])["bleu1"] < 1.0


def _tiny_bert(path):
  transformers = pytest.importorskip("transformers", reason="BERTScore needs the torch extra")
  words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "walks", "runs", "jumps", "forward"]
  (path / "vocab.txt").write_text("\n".join(words) + "\n")
  tok = transformers.BertTokenizer(str(path / "vocab.txt"))
  tok.save_pretrained(str(path))
  cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32)
  transformers.BertModel(cfg).save_pretrained(str(path))
  return str(path)


def test_bertscore_with_a_local_model(tmp_path):
  model = _tiny_bert(tmp_path)
  same = txt.bertscore(["a person walks forward"], [["a person walks forward"]], model)
  assert same == pytest.approx(1.0, abs=1e-5)
  other = txt.bertscore(["a person jumps"], [["a person walks forward"]], model)
  assert other < 1.0 - 1e-4
  assert "bertscore" in txt.m2t_metrics(["a person walks"], [["a person runs"]], bertscore_model=model)
