"""The motion VAE end to end on a small synthetic corpus: train, resume, evaluate, encode."""
import ml_collections
import numpy as np
import pytest

from llamo_jax import evaluate
from llamo_jax import tasks
from llamo_jax.tasks import latents as latents_lib
from llamo_jax.training import stages
from llamo_jax.data import pipeline as motion_pipeline
from llamo_jax.data import records
from llamo_jax.synthetic import program
from helpers import load_config, override, scalars, tags

@pytest.fixture(scope="module")
def vae_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("vae_data")
  return {"corpus": root / "corpus", "records": root / "records" / "tiny_hml263"}


def tiny_vae_config(data, **overrides):
  config = load_config("motion_vae", "tiny")
  config.data.corpus.dir = str(data["corpus"])
  config.data.corpus.num_motions = 24
  config.data.corpus.processes = 1
  config.data.path = str(data["records"])
  config.data.batch_size = 8
  config.data.max_len = 48
  config.model.width = 32
  config.mesh = {"data": 8, "fsdp": 1, "tensor": 1}
  config.total_steps = 6
  config.log_every = 1
  config.eval_every = 6
  config.eval_batches = 1
  config.eval_renders = 1
  config.checkpoint_every = 3
  config.optimizer.warmup_steps = 2
  config.stages.clips.data.max_len = 64  # the curriculum's second stage: steps 6 of 6
  return override(config, **overrides)


def test_train_resume_evaluate_encode(vae_data, tmp_path, monkeypatch):
  straight = tmp_path / "straight"
  final = tasks.train_and_evaluate(tiny_vae_config(vae_data), straight)
  losses = scalars(straight, "train/loss")
  assert sorted(losses) == [1, 2, 3, 4, 5, 6] and np.isfinite(final["loss"])
  assert {"eval/mpjpe_mm", "recon_vs_gt/0"} <= tags(straight)

  interrupted = tmp_path / "interrupted"
  tasks.train_and_evaluate(tiny_vae_config(vae_data, stop_after_steps=4), interrupted)
  tasks.train_and_evaluate(tiny_vae_config(vae_data), interrupted)
  resumed = scalars(interrupted, "train/loss")
  for step in (5, 6):
    np.testing.assert_allclose(resumed[step], losses[step], rtol=1e-6, err_msg=f"step {step}")

  task, model, step = tasks.restore_for_eval(tiny_vae_config(vae_data), straight)
  assert step == 6
  # The last stage trains on its own (longer) crops; evaluation keeps data.max_len.
  assert task.stage.name == "clips"
  assert next(task.make_loader("train", seed=0, process_index=0, process_count=1))["features"].shape[1] == 64
  assert next(motion_pipeline.make_motion_loader(task.config, "val", seed=0))["features"].shape[1] == 48
  task.set_stage(stages.Stage(1, "clips", 5, 6, task.config.optimizer,
                               ml_collections.ConfigDict({"data": {"max_length": 96}})))
  with pytest.raises(ValueError, match=r"stages.clips.data has unknown keys \['max_length'\]"):
    task.make_loader("train", seed=0, process_index=0, process_count=1)
  summary, per_clip = task.evaluate_split(model, "val", max_len=48)
  assert summary["clips"] == len(per_clip) > 0
  assert summary["mpjpe_mm"] > 0 and summary["latent_dims"] == 32
  windows = [k for k in summary if k.startswith("mpjpe_mm_frames_")]
  assert windows and windows[0].startswith("mpjpe_mm_frames_0_") and summary[windows[0]] > 0
  # The corpus's attribute records: do the reconstructions still do what each clip's record says?
  # (Clips longer than the 48-frame crop are left out; max_len=196 keeps every clip whole.)
  summary, per_clip = task.evaluate_split(model, "val", max_len=196)
  assert summary["attribute_num_clips"] == len(per_clip)
  assert 0.0 <= summary["attribute_segments"] <= 1.0 and 0.0 <= summary["attribute_clips"] <= 1.0
  assert any(k.startswith("attribute_") and k[10:] in program.ALL_ACTIONS for k in summary)

  # evaluate --motion: one clip's joints (.npy) -> its metrics and a filmstrip; a bad shape is named.
  from PIL import Image
  joints = np.load(sorted((vae_data["corpus"] / "new_joints").glob("*.npy"))[0])
  np.save(tmp_path / "clip.npy", joints)
  result = evaluate.evaluate_motion(task, model, tmp_path / "clip.npy", tmp_path, "png")
  assert result["mpjpe_mm"] > 0 and result["frames"] > 0 and result["frames"] % 4 == 0
  width, height = Image.open(result["rendered"]).size
  assert height > width / 5  # two filmstrips of 5 frames, input above reconstruction
  np.save(tmp_path / "bad.npy", joints[:, :21])
  with pytest.raises(ValueError, match=r"shape \(\d+, 21, 3\) holds: expected joints \[T, 22, 3\]"):
    evaluate.evaluate_motion(task, model, tmp_path / "bad.npy", tmp_path, "png")

  # An encode that dies half-way (second batch) leaves nothing that looks like a latent dataset.
  encode, calls = latents_lib.motion_vae.encode, []
  def dies_on_the_second_batch(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError("killed")
    return encode(*args, **kwargs)
  monkeypatch.setattr(latents_lib.motion_vae, "encode", dies_on_the_second_batch)
  with pytest.raises(RuntimeError, match="killed"):
    latents_lib.encode_dataset(task, model, vae_data["records"], tmp_path / "latents", "tiny_latents", batch_size=1)
  assert list((tmp_path / "latents").iterdir()) == []
  monkeypatch.undo()
  out = latents_lib.encode_dataset(task, model, vae_data["records"], tmp_path / "latents", "tiny_latents")
  latents = records.open_dataset(out)
  assert latents.representation == "vae_latent:hml263" and latents.dim == 32
  source = records.open_dataset(vae_data["records"])
  rec = records.decode(source.data_source("val")[0])
  enc = records.decode(latents.data_source("val")[0])
  assert enc["clip_id"] == rec["clip_id"] and enc["captions"] == rec["captions"]
  assert enc["features"].shape == (-(-rec["length"] // 4), 32)


def test_joint_vel_arg_sets_the_loss_key_only_when_given():
  assert load_config("motion_vae", "tiny,joint_vel=5").loss.w_joint_vel == 5.0
  # Absent otherwise: configs of runs trained before the key still match (resume).
  assert "w_joint_vel" not in load_config("motion_vae", "tiny").loss
