"""score: per-token log-probabilities equal transformers' log_softmax on the same tiny model."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tokenizers
from etils import epath
from tokenizers import decoders, models, pre_tokenizers, trainers

from fake_gcs import fake_gcs
from llamo_jax.core import paths

torch = pytest.importorskip("torch", reason="the scoring parity test needs torch")
transformers = pytest.importorskip("transformers", reason="the scoring parity test needs transformers")

from llamo_jax import import_llm  # pylint: disable=g-import-not-at-top  (after the importorskip above)
from llamo_jax.convert import pretrained
from llamo_jax import score

REPO = pathlib.Path(__file__).resolve().parents[1]
LINES = ["a person walks forward.", "", "the man jumps up and down twice, then waves with the right hand.",
         "someone runs", "   ", "a figure turns around slowly and sits down on the floor."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(pretrained dir, transformers model) of a random tiny Llama with a byte-level BPE tokenizer."""
  src = tmp_path_factory.mktemp("score") / "hf"
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
      rope_theta=500.0, tie_word_embeddings=False)).eval()
  model.save_pretrained(src)
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator([l for l in LINES if l.strip()] * 3, trainers.BpeTrainer(
      vocab_size=290, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(str(src / "tokenizer.json"))
  (src / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
  return import_llm.import_llm(src, src.parent / "ours"), model


def reference_logprobs(model, ids):
  with torch.no_grad():
    logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), dim=-1)
  return logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()


def test_scores_equal_transformers_log_softmax(tiny, tmp_path):
  checkpoint, ref_model = tiny
  text = tmp_path / "lines.txt"
  text.write_text("\n".join(LINES) + "\n")
  out = tmp_path / "scores.json"
  score._token_logprobs.clear_cache()  # pylint: disable=protected-access
  score.score_file(checkpoint, text, out, batch_size=2)
  result = json.loads(out.read_text())
  buckets = {score._bucket(len(ids), 128) for ids in result["token_ids"]}  # pylint: disable=protected-access
  assert score._token_logprobs._cache_size() == len(buckets) < 4  # one compile per bucket, not per line
  _, _, tokenizer = pretrained.load_pretrained(checkpoint)
  kept = [l for l in LINES if l.strip()]
  assert len(result["token_ids"]) == len(result["logprobs"]) == len(kept) == 4
  lengths = {len(ids) for ids in result["token_ids"]}
  assert len(lengths) == 4  # different lengths, batched together with padding
  total, count = 0.0, 0
  for line, ids, logprobs in zip(kept, result["token_ids"], result["logprobs"]):
    assert ids == tokenizer.encode(line, add_bos=True) and ids[0] == tokenizer.bos_id
    assert len(logprobs) == len(ids) - 1
    np.testing.assert_allclose(logprobs, reference_logprobs(ref_model, ids), atol=1e-4, rtol=0)
    total, count = total + sum(logprobs), count + len(logprobs)
  assert result["perplexity"] == pytest.approx(np.exp(-total / count), rel=1e-9)


def test_batching_does_not_change_scores_and_long_lines_error(tiny):
  checkpoint, _ = tiny
  _, model, tokenizer = pretrained.load_pretrained(checkpoint)
  kept = [l for l in LINES if l.strip()]
  _, one = score.score_lines(model, tokenizer, kept, batch_size=1)
  _, four = score.score_lines(model, tokenizer, kept, batch_size=4)
  for a, b in zip(one, four):
    np.testing.assert_allclose(a, b, atol=1e-5)
  with pytest.raises(ValueError, match="more than --max_len=4"):
    score.score_lines(model, tokenizer, kept, max_len=4)


def test_score_cli(tiny, tmp_path):
  checkpoint, _ = tiny
  text = tmp_path / "lines.txt"
  text.write_text("a person walks forward.\nsomeone runs\n")
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  res = subprocess.run(
      [sys.executable, "-m", "llamo_jax.score", f"--checkpoint={checkpoint}", f"--text_file={text}",
       f"--out={tmp_path / 's.json'}"], capture_output=True, text=True, env=env, timeout=120)
  assert res.returncode == 0, res.stderr[-2000:]
  assert "overall: 2 lines" in res.stdout and "perplexity" in res.stdout
  result = json.loads((tmp_path / "s.json").read_text())
  assert len(result["logprobs"][0]) == len(result["token_ids"][0]) - 1


def test_score_file_reads_and_writes_gcs(tiny, tmp_path, monkeypatch):
  """--checkpoint, --text_file and --out on gs:// (a fake bucket only epath and orbax reach)."""
  checkpoint, _ = tiny
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  (tmp_path / "lines.txt").write_text("a person walks forward.\n\nsomeone runs\n")
  want = score.score_file(checkpoint, tmp_path / "lines.txt")
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(checkpoint, "gs://b/pretrained")
    epath.Path("gs://b/lines.txt").write_text("a person walks forward.\n\nsomeone runs\n")
    got = score.score_file("gs://b/pretrained", "gs://b/lines.txt", "gs://b/out/scores.json")
  assert got == want
  assert json.loads((tmp_path / "bucket" / "gs:" / "b" / "out" / "scores.json").read_text()) == want
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
