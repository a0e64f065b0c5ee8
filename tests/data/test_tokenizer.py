"""Tokenizer: SentencePiece and HF `tokenizers` backends behave alike; added tokens; save/load."""
import json

import pytest
import sentencepiece as spm
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from llamo_jax.data.tokenizer import Tokenizer

SENTENCES = [
    "a person walks forward slowly and then turns around.",
    "the man jumps up and down twice.",
    "someone waves with the right hand while standing still.",
    "a figure runs in a circle, then stops and sits down.",
    "the person kicks with the left leg and raises both arms.",
] * 4


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
  prefix = tmp_path_factory.mktemp("sp") / "tok"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(SENTENCES), model_prefix=str(prefix), vocab_size=320, model_type="bpe",
      byte_fallback=True, character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
      num_threads=1, minloglevel=2, hard_vocab_limit=False)
  return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
  """An HF folder: a byte-level BPE tokenizer.json whose post-processor adds BOS (as Llama 3's does)."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(SENTENCES, trainer)
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
  folder = tmp_path_factory.mktemp("hf")
  tok.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": {"content": "</s>", "special": True}}))
  return folder


def test_sentencepiece_roundtrip_and_special_ids(sp_model):
  tok = Tokenizer.load(sp_model)
  sp = spm.SentencePieceProcessor(model_file=str(sp_model))
  text = "a person walks forward and waves."
  assert tok.backend == "sentencepiece"
  assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 3, 0)
  assert tok.vocab_size == sp.get_piece_size()
  ids = tok.encode(text, add_eos=True)
  assert ids == [2] + sp.encode(text) + [3]
  assert tok.encode(text, add_bos=False) == sp.encode(text)
  assert tok.decode(ids) == text


def test_hf_roundtrip_adds_bos_once(hf_folder):
  tok = Tokenizer.load(hf_folder)
  backend = tokenizers.Tokenizer.from_file(str(hf_folder / "tokenizer.json"))
  text = "the man jumps forward twice."
  assert tok.backend == "tokenizers"
  assert (tok.bos_id, tok.eos_id) == (0, 1)
  assert tok.pad_id == tok.eos_id  # no pad token: padding uses EOS
  plain = backend.encode(text, add_special_tokens=False).ids
  # The backend's own post-processor would add BOS; ours adds it exactly once.
  assert backend.encode(text).ids == [0] + plain
  assert tok.encode(text) == [0] + plain
  assert tok.encode(text, add_bos=False, add_eos=True) == plain + [1]
  assert tok.decode(tok.encode(text, add_eos=True)) == text


@pytest.mark.parametrize("kind", ["sp", "hf"])
def test_add_tokens_appends_and_survives_save_load(kind, sp_model, hf_folder, tmp_path):
  tok = Tokenizer.load(sp_model if kind == "sp" else hf_folder)
  n = tok.vocab_size
  ids = tok.add_tokens(["[BOM]", "[EOM]"])
  assert ids == [n, n + 1]
  assert tok.vocab_size == n + 2
  assert tok.add_tokens(["[EOM]"]) == [n + 1]  # re-adding is a no-op
  text = "a person walks[BOM] forward [EOM]then stops."
  enc = tok.encode(text, add_bos=False)
  assert enc.count(n) == 1 and enc.count(n + 1) == 1  # matched whole, never split
  assert "[BOM]" in tok.decode(enc) and "[EOM]" in tok.decode(enc)
  tok.save(tmp_path / "saved")
  again = Tokenizer.load(tmp_path / "saved")
  assert again.backend == tok.backend
  assert again.vocab_size == n + 2
  assert (again.bos_id, again.eos_id, again.pad_id) == (tok.bos_id, tok.eos_id, tok.pad_id)
  assert again.encode(text, add_eos=True) == tok.encode(text, add_eos=True)
  assert again.decode(enc) == tok.decode(enc)


def test_errors(sp_model, hf_folder, tmp_path):
  with pytest.raises(FileNotFoundError, match="No tokenizer in"):
    Tokenizer.load(tmp_path)
  with pytest.raises(FileNotFoundError, match="No tokenizer at"):
    Tokenizer.load(tmp_path / "missing")
  backend = tokenizers.Tokenizer.from_file(str(hf_folder / "tokenizer.json"))
  no_bos = Tokenizer(backend, bos_id=None, eos_id=1)
  with pytest.raises(ValueError, match="no BOS token"):
    no_bos.encode("hi")
  with pytest.raises(ValueError, match="outside the vocabulary"):
    Tokenizer(backend, bos_id=10_000, eos_id=1)
  with pytest.raises(ValueError, match="not in the vocabulary"):
    Tokenizer.from_hf(hf_folder, bos_token="<nope>")
  with pytest.raises(ValueError, match="outside the vocabulary"):
    Tokenizer.load(sp_model).decode([5, 10_000])


def test_damaged_tokenizer_file_is_one_clear_error(tmp_path):
  from llamo_jax.core.errors import InputError
  from llamo_jax.data import text as text_data
  from llamo_jax.data.tokenizer import TokenizerFileError
  model = text_data.train_sentencepiece(SENTENCES, 300, tmp_path / "tokenizer" / "sp")
  assert sorted(p.name for p in (tmp_path / "tokenizer").iterdir()) == ["sp.model", "sp.vocab"]  # no partials
  model.write_bytes(model.read_bytes()[:500])  # truncated (a kill or a full disk while copying)
  with pytest.raises(TokenizerFileError, match=r"The tokenizer at .*sp\.model is damaged or unreadable") as e:
    Tokenizer.load(model)
  assert isinstance(e.value, InputError)
  (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "trunc')
  with pytest.raises(TokenizerFileError, match=r"tokenizer\.json is damaged"):
    Tokenizer.load(tmp_path / "tokenizer.json")
