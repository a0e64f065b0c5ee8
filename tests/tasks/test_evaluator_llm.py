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
  texts = [records.decode(source[i])["captions"][0] for i in range(3)] + ["man/NOUN walk/VERB forward/ADV"]
  got = evaluator.encode_texts(texts)
  assert got.shape == (4, evaluator.dim) and np.isfinite(got).all()

  # By hand: a fresh load of the LLM, BOS + the caption's tokens, final hidden states (after the
  # final norm), then the trained text encoder. Equal only if the LLM was neither trained nor swapped.
  _, llm, tok = pretrained.load_pretrained(llm_dir)
  for text, row in zip(texts, got):
    plain = "man walk forward" if "/" in text else text
    ids = tok.encode(plain, add_bos=True)[:config.text.max_words]
    assert ids[0] == tok.bos_id and len(ids) > 2
    hidden, _ = llm.backbone(llm.embed_tokens(jnp.asarray([ids], jnp.int32)))
    want = evaluator.model.text_encoder(np.asarray(hidden, np.float32), np.asarray([len(ids)]))
    np.testing.assert_allclose(row, np.asarray(want)[0], atol=2e-5)
  # The features are the LLM's: the same encoder on another LLM's hidden states gives other embeddings.
  other = Llama(TINY, rngs=nnx.Rngs(8))
  ids = tok.encode(texts[0], add_bos=True)[:config.text.max_words]
  h_other, _ = other.backbone(other.embed_tokens(jnp.asarray([ids], jnp.int32)))
  assert np.abs(np.asarray(evaluator.model.text_encoder(np.asarray(h_other), np.asarray([len(ids)])))[0]
                - got[0]).max() > 1e-3

  # A moved LLM directory: one clear error naming the path and the fixes; back in place, it loads again.
  moved = root / "llm_moved"
  shutil.move(str(llm_dir), str(moved))
  with pytest.raises(FileNotFoundError, match=rf"LLM directory {re.escape(str(llm_dir))} .*does not exist.*import_llm "
                                              rf"--source=test --out={re.escape(str(llm_dir))}.*meta.json"):
    evaluator_lib.load_evaluator(workdir)
  meta["llm"]["dir"] = str(moved)  # the documented fix for a move
  (workdir / "evaluator" / "meta.json").write_text(json.dumps(meta))
  np.testing.assert_allclose(evaluator_lib.load_evaluator(workdir).encode_texts(texts), got, atol=1e-5)


def test_llm_key_is_for_tmr_only_and_must_exist(tmp_path):
  with pytest.raises(ValueError, match="llm=.*is for the tmr presets"):
    load_config("evaluator", f"guo_tiny,llm={tmp_path}")
  with pytest.raises(FileNotFoundError, match=rf"LLM directory {re.escape(str(tmp_path / 'nope'))} .*python -m llamo_jax.import_llm"):
    evaluator_lib.LLMTextFeatures(tmp_path / "nope", 8)
