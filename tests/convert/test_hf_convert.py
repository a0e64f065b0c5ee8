"""HF import/export parity on random tiny transformers Llamas, and the conversion errors."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
from etils import epath
from flax import nnx
from tokenizers import decoders, models, pre_tokenizers, trainers

torch = pytest.importorskip("torch", reason="HF parity tests need torch (pip install .[torch])")
transformers = pytest.importorskip("transformers", reason="HF parity tests need transformers")

from llamo_jax import export as export_lib  # pylint: disable=g-import-not-at-top  (after the importorskip above)
from llamo_jax import import_llm
from llamo_jax.convert import pretrained
from llamo_jax.core import sharding
from llamo_jax.convert import hf as hf_lib
from llamo_jax.core import paths
from llamo_jax.data.tokenizer import Tokenizer
from fake_gcs import fake_gcs

REPO = pathlib.Path(__file__).resolve().parents[2]
VOCAB = 320
TEXTS = ["a person walks forward slowly and then turns around.", "the man jumps up and down twice.",
         "someone waves with the right hand while standing still."] * 4
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def write_tokenizer(folder: pathlib.Path) -> None:
  """A byte-level BPE tokenizer.json + tokenizer_config.json, trained on TEXTS."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(TEXTS, trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": "</s>", "tokenizer_class": "PreTrainedTokenizerFast"}))


def make_hf_model(folder: pathlib.Path, *, n_kv_heads: int, tie: bool, rope_scaling: dict | None,
                  max_shard_size: str | None = None, seed: int = 0):
  """Saves a random tiny LlamaForCausalLM (fp32) + tokenizer in `folder`; returns the torch model."""
  torch.manual_seed(seed)
  cfg = transformers.LlamaConfig(
      vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=n_kv_heads, head_dim=8, max_position_embeddings=64,
      rms_norm_eps=1e-5, rope_theta=500.0, rope_scaling=rope_scaling, tie_word_embeddings=tie,
      bos_token_id=0, eos_token_id=1, initializer_range=0.1)  # large enough that any slip shows
  model = transformers.LlamaForCausalLM(cfg).eval()
  with torch.no_grad():  # non-trivial norm scales, so a swapped norm shows
    for name, p in model.named_parameters():
      if "norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
  model.save_pretrained(folder, **kwargs)
  write_tokenizer(folder)
  return model


def torch_logits(model, ids: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor(ids)).logits.numpy()


IDS = np.random.RandomState(0).randint(2, VOCAB, size=(2, 24))

VARIANTS = {
    "gqa_untied_llama3": dict(n_kv_heads=2, tie=False, rope_scaling=LLAMA3_SCALING),
    "mha_tied_default": dict(n_kv_heads=4, tie=True, rope_scaling=None),
    "mha_untied_llama3": dict(n_kv_heads=4, tie=False, rope_scaling=LLAMA3_SCALING),
    "gqa_tied_default_sharded": dict(n_kv_heads=2, tie=True, rope_scaling=None, max_shard_size="20KB"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_import_matches_transformers_and_export_roundtrips(variant, tmp_path):
  src = tmp_path / "hf"
  ref = make_hf_model(src, **VARIANTS[variant])
  if "sharded" in variant:
    assert (src / hf_lib.INDEX_FILE).is_file() and not (src / hf_lib.SINGLE_FILE).exists()

  out = import_llm.import_llm(src, tmp_path / "ours")
  cfg, model, tok = pretrained.load_pretrained(out)
  assert cfg.tie_embeddings == VARIANTS[variant]["tie"]
  assert (cfg.rope_scaling is None) == (VARIANTS[variant]["rope_scaling"] is None)
  ours, _ = model(jnp.asarray(IDS))
  expected = torch_logits(ref, IDS)
  np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4, rtol=0)

  exported = export_lib.export(out, "hf", tmp_path / "exported")
  back = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
  want, got = ref.state_dict(), back.state_dict()
  assert sorted(want) == sorted(got)
  for name in want:
    assert torch.equal(want[name], got[name]), name
  assert np.array_equal(torch_logits(back, IDS), expected)
  assert back.config.rope_parameters == ref.config.rope_parameters

  hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
  for text in ["a person walks forward.", "someone jumps twice!"]:
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text, add_bos=False)
  assert (hf_tok.bos_token_id, hf_tok.eos_token_id) == (tok.bos_id, tok.eos_id) == (0, 1)


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory):
  src = tmp_path_factory.mktemp("tiny") / "hf"
  make_hf_model(src, n_kv_heads=2, tie=False, rope_scaling=None)
  return src


@pytest.fixture(scope="module")
def tiny_pretrained(tiny_src, tmp_path_factory):
  return import_llm.import_llm(tiny_src, tmp_path_factory.mktemp("tiny_ours") / "ours")


def _copy_src(tiny_src, tmp_path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(tiny_src, tmp_path / "src"))


def _edit_config(folder, **changes):
  cfg = json.loads((folder / "config.json").read_text())
  cfg.update(changes)
  (folder / "config.json").write_text(json.dumps(cfg))


def test_error_missing_tokenizer(tiny_src, tmp_path):
  src = _copy_src(tiny_src, tmp_path)
  (src / "tokenizer.json").unlink()
  with pytest.raises(FileNotFoundError, match="has no tokenizer"):
    import_llm.import_llm(src, tmp_path / "out")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes,match", [
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "Unsupported architecture"),
    ({"sliding_window": 4096}, "sliding_window"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0}}, "rope_type='yarn'"),
    ({"attention_bias": True}, "biases"),
])
def test_error_unsupported_architecture(tiny_src, tmp_path, changes, match):
  src = _copy_src(tiny_src, tmp_path)
  _edit_config(src, **changes)
  with pytest.raises(hf_lib.ConversionError, match=match):
    import_llm.import_llm(src, tmp_path / "out")


def test_error_truncated_safetensors_is_one_sentence(tiny_src, tmp_path):
  src = _copy_src(tiny_src, tmp_path)
  weights = src / "model.safetensors"
  weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted download
  with pytest.raises(hf_lib.ConversionError, match=r"model\.safetensors is damaged or truncated.*download it again"):
    import_llm.import_llm(src, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_error_shape_mismatch_names_tensor(tiny_src, tmp_path):
  src = _copy_src(tiny_src, tmp_path)
  _edit_config(src, intermediate_size=64)
  with pytest.raises(hf_lib.ConversionError,
                     match=r"mlp\.(gate|up|down)_proj\.weight has shape \(\d+, \d+\), expected"):
    import_llm.import_llm(src, tmp_path / "out")


def test_error_missing_and_unexpected_tensors(tiny_src, tmp_path):
  src = _copy_src(tiny_src, tmp_path)
  tensors = safetensors.numpy.load_file(str(src / "model.safetensors"))
  del tensors["model.layers.1.self_attn.v_proj.weight"]
  safetensors.numpy.save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(hf_lib.ConversionError, match=r"lacks 1 tensors.*layers\.1\.self_attn\.v_proj"):
    import_llm.import_llm(src, tmp_path / "out")
  tensors["model.layers.1.self_attn.v_proj.weight"] = np.zeros((16, 32), np.float32)
  tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros((32,), np.float32)
  safetensors.numpy.save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(hf_lib.ConversionError, match=r"q_proj\.bias.*not supported"):
    import_llm.import_llm(src, tmp_path / "out")


def test_out_dir_with_checkpoint_needs_overwrite_and_survives_failures(tiny_src, tmp_path):
  out = pathlib.Path(import_llm.import_llm(tiny_src, tmp_path / "out"))  # epath has no rglob
  before = sorted(p.relative_to(out) for p in out.rglob("*"))
  with pytest.raises(pretrained.PretrainedDirError, match="already contains.*--overwrite"):
    import_llm.import_llm(tiny_src, out)
  bad = _copy_src(tiny_src, tmp_path)
  _edit_config(bad, intermediate_size=64)
  with pytest.raises(hf_lib.ConversionError):
    import_llm.import_llm(bad, out, overwrite=True)
  assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # old checkpoint intact
  import_llm.import_llm(tiny_src, out, overwrite=True, param_dtype="bfloat16")
  assert pretrained.read_config(out).param_dtype == "bfloat16"
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("keep me")
  with pytest.raises(pretrained.PretrainedDirError, match="not empty"):
    import_llm.import_llm(tiny_src, tmp_path / "other", overwrite=True)


def test_load_pretrained_errors_and_runtime_overrides(tiny_pretrained, tmp_path):
  with pytest.raises(pretrained.PretrainedDirError, match="not a llamo_jax pretrained directory"):
    pretrained.load_pretrained(tmp_path)
  stored = pretrained.read_config(tiny_pretrained)
  wrong = stored.__class__(**{**stored.to_dict(), "n_layers": 3})
  with pytest.raises(pretrained.PretrainedDirError, match="n_layers: checkpoint 2 vs requested 3"):
    pretrained.load_pretrained(tiny_pretrained, config=wrong)
  runtime = stored.__class__(**{**stored.to_dict(), "param_dtype": "bfloat16", "scan_layers": False})
  cfg, model, _ = pretrained.load_pretrained(tiny_pretrained, config=runtime)
  assert cfg == runtime
  assert model.layers.text.q.kernel[...].dtype == jnp.bfloat16


def test_load_pretrained_into_mesh_matches_unsharded(tiny_pretrained):
  _, model, _ = pretrained.load_pretrained(tiny_pretrained)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  _, sharded, _ = pretrained.load_pretrained(tiny_pretrained, mesh=mesh)
  q = sharded.layers.text.q.kernel[...]
  assert q.sharding.spec == sharding.logical_to_spec(("layers", "embed", "heads", "head_dim"))
  assert len(q.sharding.device_set) == 8
  ids = jnp.asarray(IDS[:, :8])
  want, _ = model(ids)
  got, _ = jax.jit(lambda m, x: m(x))(sharded, ids)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_export_rejects_unknown_format_and_used_out(tiny_pretrained, tmp_path):
  with pytest.raises(ValueError, match=r"Unknown export format 'onnx'; known formats: \['hf', 'pytorch'\]"):
    export_lib.export(tiny_pretrained, "onnx", tmp_path / "x")
  (tmp_path / "used").mkdir()
  (tmp_path / "used" / "f").write_text("x")
  with pytest.raises(FileExistsError, match="not an empty directory"):
    export_lib.export(tiny_pretrained, "hf", tmp_path / "used")


def test_export_reads_and_writes_gcs_and_a_failure_leaves_nothing(tiny_pretrained, tmp_path, monkeypatch):
  """--checkpoint and --out on gs:// (a fake bucket only epath and orbax reach): the same files as a local
  export; a failing export leaves neither --out nor a temporary folder in the bucket."""
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  local = export_lib.export(tiny_pretrained, "hf", tmp_path / "local")
  bucket = tmp_path / "bucket" / "gs:" / "b"
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(tiny_pretrained, "gs://b/pretrained")
    assert str(export_lib.export("gs://b/pretrained", "hf", "gs://b/hf")) == "gs://b/hf"
    with pytest.raises(FileExistsError, match="not an empty directory"):
      export_lib.export("gs://b/pretrained", "hf", "gs://b/hf")

    def half_written(checkpoint, out):
      (out / "config.json").write_text("{}")
      raise RuntimeError("disk full")

    monkeypatch.setitem(export_lib.FORMATS, "hf", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
      export_lib.export("gs://b/pretrained", "hf", "gs://b/hf2")
  assert sorted(os.listdir(bucket)) == ["hf", "pretrained"]
  assert sorted(os.listdir(bucket / "hf")) == sorted(os.listdir(local))
  for name in os.listdir(local):
    assert (bucket / "hf" / name).read_bytes() == (local / name).read_bytes(), name
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"


def _tree_equal(a, b) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_import_reads_and_writes_gcs_and_a_failure_leaves_nothing(tiny_src, tiny_pretrained, tmp_path,
                                                                   monkeypatch):
  """--source (an HF folder) and --out on gs:// (a fake bucket only epath and orbax reach): the same
  checkpoint as a local import; an import failing mid-write leaves neither --out nor a temporary folder."""
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  bucket = tmp_path / "bucket" / "gs:" / "b"
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(tiny_src, "gs://b/hf")
    assert str(import_llm.import_llm("gs://b/hf", "gs://b/ours")) == "gs://b/ours"
    cfg, model, tok = pretrained.load_pretrained("gs://b/ours")
    want_cfg, want_model, want_tok = pretrained.load_pretrained(tiny_pretrained)
    assert cfg == want_cfg and tok.encode(TEXTS[0]) == want_tok.encode(TEXTS[0])
    _tree_equal(nnx.state(model, nnx.Param).to_pure_dict(), nnx.state(want_model, nnx.Param).to_pure_dict())
    with pytest.raises(FileNotFoundError, match="gs://b/nothing does not exist"):
      import_llm.import_llm("gs://b/nothing", "gs://b/x")
    paths.upload_tree(tiny_src, "gs://b/notok")
    epath.Path("gs://b/notok/tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="^gs://b/notok has no tokenizer"):
      import_llm.import_llm("gs://b/notok/", "gs://b/x")

    def half_written(self, directory):
      (epath.Path(directory) / "partial.json").write_text("{}")
      raise OSError("disk full")

    monkeypatch.setattr(Tokenizer, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
      import_llm.import_llm("gs://b/hf", "gs://b/failed")
  assert sorted(os.listdir(bucket)) == ["hf", "notok", "ours"]
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"


def test_import_cli(tiny_src, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  run = lambda *args: subprocess.run([sys.executable, "-m", "llamo_jax.import_llm", *args],
                                     capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
  res = run(f"--source={tiny_src}", f"--out={tmp_path / 'cli'}")
  assert res.returncode == 0, res.stderr[-2000:]
  assert pretrained.read_config(tmp_path / "cli") == pretrained.read_config(
      import_llm.import_llm(tiny_src, tmp_path / "api"))
  res = run(f"--source={tiny_src}", f"--out={tmp_path / 'cli'}")
  assert res.returncode != 0 and "already contains a pretrained checkpoint" in res.stderr
  assert Tokenizer.load(tmp_path / "cli" / "tokenizer").encode("a person") == Tokenizer.load(
      tiny_src).encode("a person")


def test_export_sentencepiece_tokenizer_loads_in_transformers(tiny_src, tmp_path):
  spm = pytest.importorskip("sentencepiece")
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(TEXTS), model_prefix=str(tmp_path / "sp"), vocab_size=300,
      model_type="bpe", byte_fallback=True, character_coverage=1.0, pad_id=0, unk_id=1, bos_id=2,
      eos_id=3, num_threads=1, minloglevel=2, hard_vocab_limit=False)
  tok = Tokenizer.load(tmp_path / "sp.model")
  bom, eom = tok.add_tokens(["[BOM]", "[EOM]"])
  cfg = hf_lib.llama_config_from_hf(hf_lib.read_hf_config(tiny_src))
  params = hf_lib.params_from_hf(hf_lib.load_safetensors(tiny_src), cfg)
  out = pretrained.write_pretrained(tmp_path / "ours", cfg, params, tok)
  exported = export_lib.export(out, "hf", tmp_path / "exported")
  hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
  for text in ["a person walks forward.", "someone jumps[BOM] twice [EOM]then waves"]:
    assert hf_tok(text)["input_ids"] == tok.encode(text), text
  assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (2, 3, 0)
  assert hf_tok.convert_tokens_to_ids(["[BOM]", "[EOM]"]) == [bom, eom]


def test_bfloat16_checkpoint_roundtrips_exactly(tmp_path):
  src = tmp_path / "hf"
  ref = make_hf_model(src, n_kv_heads=2, tie=False, rope_scaling=None)
  ref = ref.to(torch.bfloat16)
  ref.save_pretrained(src)  # overwrite the fp32 weights with bfloat16 ones
  out = import_llm.import_llm(src, tmp_path / "ours", param_dtype="bfloat16")
  cfg, model, _ = pretrained.load_pretrained(out)
  assert cfg.param_dtype == "bfloat16"
  ours = np.asarray(model.layers.text.down.kernel[...][1].astype(jnp.float32))
  want = ref.model.layers[1].mlp.down_proj.weight.detach().float().numpy().T
  np.testing.assert_array_equal(ours, want)
  back = transformers.AutoModelForCausalLM.from_pretrained(export_lib.export(out, "hf", tmp_path / "exp"))
  assert back.config.dtype == torch.bfloat16
  for name, tensor in ref.state_dict().items():
    assert torch.equal(back.state_dict()[name], tensor), name


def test_old_style_config_json_equals_transformers5_style():
  new = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
         "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
         "max_position_embeddings": 131072, "tie_word_embeddings": True,
         "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}}
  old = {k: v for k, v in new.items() if k not in ("rope_parameters", "head_dim")}
  old.update(rope_theta=500000.0, rope_scaling={
      "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192})
  cfg = hf_lib.llama_config_from_hf(new)
  assert hf_lib.llama_config_from_hf(old) == cfg
  assert cfg.head_dim == 64 and cfg.rope_theta == 500000.0 and cfg.rope_scaling.factor == 32.0
  plain = dict(old, rope_scaling=None)
  del plain["rope_theta"]
  assert hf_lib.llama_config_from_hf(plain).rope_theta == 10000.0  # transformers' default
  assert hf_lib.llama_config_from_hf(plain).rope_scaling is None
  # Our export writes a config that reads back to the same LlamaConfig.
  assert hf_lib.llama_config_from_hf(hf_lib.hf_config_from_llama(cfg)) == cfg
