"""The tmr evaluator with text features from a frozen imported LLM (configs/evaluator.py:tmr,llm=DIR),
end to end on a tiny Llama made here: a few trainer steps, load_evaluator, its text embeddings
against the LLM's hidden states by hand, the LLM untouched, and a missing LLM's error."""
import hashlib
import json
import re
import pathlib
import shutil

from flax import nnx
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax import tasks
from llamo_jax.convert import pretrained
from llamo_jax.data import records
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama
from llamo_jax.tasks import evaluator as evaluator_lib
from helpers import load_config, scalars
from test_evaluator_task import tiny_config

TINY = presets.get_preset("tiny")


def make_tiny_llm(root):
  """An import_llm-style directory: a random tiny Llama and a byte-level BPE with BOS/EOS."""
  tokenizers = pytest.importorskip("tokenizers")
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.train_from_iterator(["a person walks forward then turns left and jumps"] * 4, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
  (root / "tok").mkdir()
  tok.save(str(root / "tok" / "tokenizer.json"))
  (root / "tok" / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"}))
  return pretrained.save_pretrained(root / "llm", TINY, Llama(TINY, rngs=nnx.Rngs(7)),
                                    Tokenizer.load(root / "tok"), source="test")


def _digest(directory):
  h = hashlib.sha256()
  for f in sorted(p for p in directory.rglob("*") if p.is_file()):
    h.update(str(f.relative_to(directory)).encode() + f.read_bytes())
  return h.hexdigest()


def test_tmr_with_llm_text_trains_loads_and_matches_the_llm_by_hand(tmp_path_factory):
  root = tmp_path_factory.mktemp("evaluator_llm")
  llm_dir = pathlib.Path(make_tiny_llm(root))
  before = _digest(llm_dir)
  config = tiny_config(root, f"tmr_tiny,llm={llm_dir}", 20)
  assert config.text.llm == str(llm_dir)
  workdir = root / "run"
  final = tasks.train_and_evaluate(config, workdir)
  assert np.isfinite(final["loss"]) and sorted(scalars(workdir, "train/loss")) == [1, 2, 3]
  assert 0.0 <= scalars(workdir, "eval/r_precision_top3")[3] <= 1.0

  meta = json.loads((workdir / "evaluator" / "meta.json").read_text())
  assert meta["llm"]["dir"] == str(llm_dir) and meta["llm"]["dim"] == TINY.dim
  assert meta["model"]["text_feature_dim"] == TINY.dim
  assert _digest(llm_dir) == before  # the LLM's files are untouched

  evaluator = evaluator_lib.load_evaluator(workdir)
  # Only the TMR encoders are trained and saved: no word table, nothing of the LLM.
  names = {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(evaluator.model, nnx.Param))}
  assert names and all(n.startswith(("motion_encoder/", "text_encoder/")) for n in names), sorted(names)[:5]
  assert evaluator.model.text_encoder.input.kernel[...].shape[0] == TINY.dim

  source = records.open_dataset(root / "records_hml263").data_source("train")
  texts = [records.decode(source[i])["captions"][0] for i in range(2)] + ["man/NOUN walk/VERB forward/ADV"]
  got = evaluator.encode_texts(texts)
  assert got.shape == (3, evaluator.dim) and np.isfinite(got).all()

  # By hand: a fresh load of the LLM, BOS + each caption's tokens alone (no padding), the final
  # hidden states (after the final norm), then the trained text encoder. Equal only if the LLM
  # was neither trained nor swapped. The last row: another LLM's states give other embeddings.
  _, llm, tok = pretrained.load_pretrained(llm_dir)
  other = Llama(TINY, rngs=nnx.Rngs(8))
  max_words = config.text.max_words
  hidden = np.zeros((len(texts) + 1, max_words, TINY.dim), np.float32)
  lengths = np.zeros((len(texts) + 1,), np.int32)
  for i, (text, model) in enumerate(zip(texts + texts[:1], [llm] * len(texts) + [other])):
    ids = tok.encode("man walk forward" if "/" in text else text, add_bos=True)[:max_words]
    assert ids[0] == tok.bos_id and len(ids) > 2
    h, _ = model.backbone(model.embed_tokens(jnp.asarray([ids], jnp.int32)))
    hidden[i, :len(ids)], lengths[i] = np.asarray(h[0], np.float32), len(ids)
  want = np.asarray(evaluator.model.text_encoder(hidden, lengths))
  np.testing.assert_allclose(got, want[:len(texts)], atol=2e-5)
  assert np.abs(want[-1] - got[0]).max() > 1e-3

  # A moved LLM directory: one clear error naming the path and the fixes (nothing is loaded).
  shutil.move(str(llm_dir), str(root / "llm_moved"))
  with pytest.raises(FileNotFoundError, match=rf"LLM directory {re.escape(str(llm_dir))} .*does not exist.*import_llm "
                                              rf"--source=test --out={re.escape(str(llm_dir))}.*"
                                              rf"\"llm\" -> \"dir\" in .*evaluator/meta.json to its new place"):
    evaluator_lib.load_evaluator(workdir)


def test_llm_features_do_not_depend_on_the_other_captions_of_a_batch(tmp_path):
  """A caption's features are the same alone (padded to 8 tokens) and beside a long caption
  (padded to 32): what lets them be cached per caption."""
  llm_dir = make_tiny_llm(tmp_path)
  short, long = "a person walks", "a person walks forward then turns left and jumps " * 6
  alone, n_alone = evaluator_lib.LLMTextFeatures(llm_dir, 32)([short])
  both, n_both = evaluator_lib.LLMTextFeatures(llm_dir, 32)([long, short, short])
  assert n_alone[0] == n_both[1] == n_both[2] < 8 and n_both[0] == 32
  np.testing.assert_allclose(both[1], alone[0], atol=1e-5)
  assert not both[1, n_both[1]:].any() and np.abs(both[1, :n_both[1]]).min() > 0


def test_llm_key_is_for_tmr_only_and_must_exist(tmp_path):
  with pytest.raises(ValueError, match="llm=.*is for the tmr presets"):
    load_config("evaluator", f"guo_tiny,llm={tmp_path}")
  with pytest.raises(FileNotFoundError, match=rf"LLM directory {re.escape(str(tmp_path / 'nope'))} .*python -m llamo_jax.import_llm"):
    evaluator_lib.LLMTextFeatures(tmp_path / "nope", 8)
