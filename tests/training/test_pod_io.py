"""Pod I/O: a run whose workdir, corpus and pretrained dir are all gs:// (a fake bucket that
only epath and orbax can reach), so any path handled as a local file fails."""
import dataclasses
import json
import types

import jax
import ml_collections
import numpy as np
import pytest
from clu import metric_writers
from etils import epath
from flax import nnx

from fake_gcs import fake_gcs
from helpers import load_config
from llamo_jax import tasks
from llamo_jax.convert import pretrained
from llamo_jax.core import paths
from llamo_jax.data import records
from llamo_jax.data import text as text_data
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.models import presets
from llamo_jax.models.llama import Llama
from llamo_jax.tasks import llamo as llamo_task
from llamo_jax.training import runs
from llamo_jax.training import sweeps
from llamo_jax.training import trainer


def test_absolute_keeps_uris():
  assert str(paths.absolute("gs://bucket/run")) == "gs://bucket/run"
  assert str(epath.Path("gs://bucket/run").resolve()) != "gs://bucket/run"  # why paths.absolute exists
  assert paths.absolute("rel").is_absolute()


def test_copy_file_streams_in_chunks(tmp_path):
  data = np.random.default_rng(0).bytes(10_000)
  (tmp_path / "w.gguf").write_bytes(data)
  with fake_gcs(tmp_path / "bucket"):
    paths.copy_file(tmp_path / "w.gguf", "gs://b/m/w.gguf", chunk_bytes=4096)  # 3 chunks up
    paths.copy_file("gs://b/m/w.gguf", tmp_path / "back.gguf", chunk_bytes=999)  # 11 chunks down
  assert (tmp_path / "back.gguf").read_bytes() == data


def test_staged_file_uploads_only_on_success(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with fake_gcs(tmp_path / "bucket"):
    with paths.staged_file("gs://b/out/a.gif") as local:
      assert paths.is_local(local) and local.suffix == ".gif"  # writers choose the format by it
      local.write_bytes(b"GIF89a")
    with pytest.raises(RuntimeError, match="renderer failed"):
      with paths.staged_file("gs://b/out/b.gif") as local:
        local.write_bytes(b"GIF8")  # half written
        raise RuntimeError("renderer failed")
    assert epath.Path("gs://b/out/a.gif").read_bytes() == b"GIF89a"
    assert not epath.Path("gs://b/out/b.gif").exists()
  with paths.staged_file(tmp_path / "here" / "c.png") as local:  # local: the target itself
    assert local == tmp_path / "here" / "c.png" and local.parent.is_dir()
  assert not (tmp_path / "gs:").exists()


def test_pretrained_dir_and_workdir_config_on_gcs(tmp_path, caption_corpus_dir, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(caption_corpus_dir, "gs://b/corpus")
    lines = text_data.read_caption_lines("gs://b/corpus", "train")
    sp_model = text_data.train_sentencepiece(lines, 300, "gs://b/tok/sp")
    assert str(sp_model) == "gs://b/tok/sp.model"
    tokenizer = Tokenizer.load(sp_model)
    cfg = dataclasses.replace(presets.get_preset("tiny"), vocab_size=tokenizer.vocab_size, n_layers=1)
    model = Llama(cfg, rngs=nnx.Rngs(0))
    out = pretrained.save_pretrained("gs://b/pretrained", cfg, model, tokenizer, source="test")
    assert str(out) == "gs://b/pretrained" and pretrained.is_pretrained_dir("gs://b/pretrained")
    loaded_cfg, loaded, loaded_tok = pretrained.load_pretrained("gs://b/pretrained")
    assert loaded_cfg == cfg and loaded_tok.encode(lines[0]) == tokenizer.encode(lines[0])
    for a, b in zip(jax.tree.leaves(nnx.state(model, nnx.Param).to_pure_dict()),
                    jax.tree.leaves(nnx.state(loaded, nnx.Param).to_pure_dict())):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    config = ml_collections.ConfigDict({"task": "lm", "total_steps": 3, "model": {"dim": 8}})
    runs.check_config_against_workdir(config, paths.absolute("gs://b/run"))
    assert runs.load_run_config("gs://b/run", task="lm").model.dim == 8
    config.model.dim = 16
    with pytest.raises(ValueError, match="different config"):
      runs.check_config_against_workdir(config, paths.absolute("gs://b/run"))
  assert (tmp_path / "bucket" / "gs:" / "b" / "run" / "config.json").is_file()
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"


@pytest.mark.slow
def test_lm_run_and_pretrained_export_on_gcs(tmp_path, caption_corpus_dir, monkeypatch):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  # TensorFlow's TensorBoard writer has its own GCS client, which the fake cannot serve.
  local_tb = tmp_path / "tb"
  create = metric_writers.create_default_writer
  monkeypatch.setattr(trainer.metric_writers, "create_default_writer",
                      lambda logdir, **kw: create(str(local_tb), **kw))
  bucket = tmp_path / "bucket"
  with fake_gcs(bucket) as fake:
    paths.upload_tree(caption_corpus_dir, "gs://b/corpus")
    config = load_config("lm", "tiny,corpus_dir=gs://b/corpus")
    config.tokenizer_vocab_size = 300
    config.data.seq_len, config.data.batch_size = 32, 8
    config.total_steps = config.checkpoint_every = config.log_every = 2
    config.eval_every = 0
    config.optimizer.warmup_steps = 1
    metrics = tasks.train_and_evaluate(config, "gs://b/run")
    assert np.isfinite(metrics["loss"])
    run = bucket / "gs:" / "b" / "run"
    assert (run / "config.json").is_file() and (run / "tokenizer" / "sp.model").is_file()
    assert (run / "checkpoints" / "2" / "state").is_dir() and (run / "checkpoints" / "2" / "data_iter").is_dir()
    assert sweeps.status("gs://b/run") == sweeps.Status("finished", 2, 2)
    assert runs.load_run_config("gs://b/run", task="lm").total_steps == 2

    # The LM run exported as a pretrained dir on GCS, then restored from there.
    llamo_task.export_lm_workdir("gs://b/run", "gs://b/pretrained")
    assert pretrained.is_pretrained_dir("gs://b/pretrained")
    _, model, tokenizer = pretrained.load_pretrained("gs://b/pretrained")
    task, trained, step = tasks.restore_for_eval(config, "gs://b/run")
    assert step == 2
    got, want = (jax.tree.leaves(nnx.state(m, nnx.Param).to_pure_dict()) for m in (model, trained))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    text = "a person walks forward"
    assert tokenizer.encode(text) == task.tokenizer.encode(text)
    assert fake.calls > 0
  assert not (cwd / "gs:").exists(), "a gs:// path was written to the local disk"
  assert not any(p.name.startswith("gs:") for p in tmp_path.iterdir())


def test_records_and_latents_paths_on_gcs(tmp_path):
  with fake_gcs(tmp_path / "bucket"):
    root = epath.Path("gs://b/records/motion")
    root.mkdir(parents=True)
    meta = {"format_version": records.FORMAT_VERSION, "name": "motion", "representation": "hml263", "dim": 3,
            "fps": 20, "split_sizes": {"train": 5}, "mirrored_train": True}
    (root / records.META_FILE).write_text(json.dumps(meta))
    paths.save_npy(root / records.MEAN_FILE, np.arange(3, dtype=np.float32))
    paths.save_npy(root / records.STD_FILE, np.ones(3, np.float32))
    ds = records.open_dataset("gs://b/records/motion")
    assert str(ds.path) == "gs://b/records/motion" and ds.mirrored_train
    np.testing.assert_array_equal(ds.mean, [0, 1, 2])
    with paths.staged_dir("gs://b/samples") as local:  # a local-only writer's output uploaded
      (local / "x.gif").write_bytes(b"GIF")
    assert epath.Path("gs://b/samples/x.gif").read_bytes() == b"GIF"
  # The latent records LLaMo trains on live beside the VAE run, gs:// kept (pathlib would give gs:/).
  for mirror, name in ((False, "motion_latents"), (True, "motion_mirror_latents")):
    task = types.SimpleNamespace(
        config=ml_collections.ConfigDict({"data": {"mirror": mirror}, "vae": {"workdir": "gs://b/vae"}}),
        vae_config=ml_collections.ConfigDict({"data": {"path": "gs://b/records/motion"}}))
    task._motion_records_path = types.MethodType(llamo_task.LLaMoTask._motion_records_path, task)
    assert llamo_task.LLaMoTask.latents_path.fget(task) == f"gs://b/vae/latents/{name}"
