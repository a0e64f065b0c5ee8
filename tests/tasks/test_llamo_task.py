"""The demo pipeline end to end at toy size: LM -> VAE -> LLaMo align/joint/anneal.

One module-scoped run of configs/demo.py:smoke in a tmp workdir; the tests then
check the stages' trainable partitions, the frozen text path, the samples, and that
a LLaMo run killed at a stage boundary and mid-stage resumes to identical losses.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

from flax import nnx
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax.training import checkpoints
from llamo_jax.convert import pretrained
from llamo_jax import tasks
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.tasks import llamo as llamo_task
from llamo_jax.training import runs
from helpers import load_config, override, run_without_jax, scalars, tags

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS = {"align": 2, "joint": 2, "anneal": 2}


def shrink(config):
  """configs/demo.py:smoke on 8 fake devices, keeping every checkpoint (the resume tests read them)."""
  assert all(config.pipeline.llamo.stages[name].steps == steps for name, steps in STEPS.items())
  return override(config, **{
      "pipeline.llamo.mesh": {"data": 8, "fsdp": 1, "tensor": 1}, "pipeline.llamo.max_checkpoints": 5,
      "pipeline.llamo.async_checkpoints": False})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  root = tmp_path_factory.mktemp("demo")
  config = shrink(load_config("demo", "smoke"))
  workdir = root / "run"
  metrics = tasks.train_and_evaluate(config, workdir)
  return {"root": root, "workdir": workdir, "config": config, "metrics": metrics}


def llamo_config(demo, **overrides):
  config = runs.resolve_workdir(demo["config"].pipeline.llamo, demo["workdir"])
  return override(config, **overrides)


def restore_params(demo, step):
  """Flat {path: array} of every param (trainable and frozen) of the demo's LLaMo at `step`."""
  _, model, _ = tasks.restore_for_eval(llamo_config(demo), demo["workdir"] / "llamo", step)
  flat = traverse_util.flatten_dict(nnx.state(model, nnx.Param).to_pure_dict())
  return {".".join(map(str, k)): np.asarray(v) for k, v in flat.items()}


def test_pipeline_outputs(demo):
  wd = demo["workdir"]
  assert pretrained.is_pretrained_dir(wd / "lm" / "pretrained")
  assert (wd / "vae" / "latents").is_dir()
  samples = wd / "llamo" / "samples" / "step_6"
  for i in range(2):
    joints = np.load(samples / f"t2m_{i}.npy")
    assert joints.ndim == 3 and joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
    assert (samples / f"t2m_{i}.gif").stat().st_size > 0
  checks = json.loads((samples / "t2m.json").read_text())
  assert [(c["expect"], c["sample"]) for c in checks] == [
      ("walk direction=forward", 0), ("jump count=1", 0), ("walk direction=forward", 1), ("jump count=1", 1)]
  assert all(isinstance(c["ok"], bool) and "distance" in c["measured"] for c in checks)
  captions = json.loads((samples / "captions.json").read_text())
  assert len(captions) == 2 and all(c["references"] and c["named_actions"] for c in captions)
  logged = tags(wd / "llamo")
  assert {"train/flow_loss", "train/text_loss", "train/exit_loss", "eval/t2m_flow_loss",
          "eval/t2m_flow_loss_nocaption", "eval/t2m_first_flow_loss", "eval/t2m_first_flow_loss_nocaption",
          "eval/t2m_first_caption_gain",
          "eval/m2t_text_loss", "eval/text_only_loss", "eval/t2m_prompt_adherence",
          "eval/m2t_action_recall", "t2m/0"} <= logged
  stage = scalars(wd / "llamo", "train/stage")
  assert [stage[s] for s in range(1, 7)] == [0, 0, 1, 1, 2, 2]


def test_stages_train_their_partitions_and_text_stays_frozen(demo):
  p2, p4, p6 = (restore_params(demo, s) for s in (2, 4, 6))
  motion = [k for k in p2 if k.startswith("layers.motion.")]
  text = [k for k in p2 if k.startswith("layers.text.")]
  assert motion and text
  # align: the motion expert is still the copy of the text expert.
  for k in motion:
    np.testing.assert_array_equal(p2[k], p2[k.replace(".motion.", ".text.")], err_msg=k)
  # joint: it moved; anneal: it stays, only the heads move.
  assert any(not np.array_equal(p2[k], p4[k]) for k in motion)
  for k in motion + ["motion_in.kernel"]:
    np.testing.assert_array_equal(p4[k], p6[k], err_msg=k)
  heads = [k for k in p4 if k.startswith(("flow_head.", "exit_head."))]
  assert any(not np.array_equal(p4[k], p6[k]) for k in heads)
  # the text path never moves.
  for k in text + ["embed.embedding", "final_norm.scale"]:
    np.testing.assert_array_equal(p2[k], p6[k], err_msg=k)


def test_text_only_logits_bit_identical_to_base_after_training(demo):
  wd = demo["workdir"]
  _, base, tokenizer = pretrained.load_pretrained(wd / "lm" / "pretrained")
  _, model, step = tasks.restore_for_eval(llamo_config(demo), wd / "llamo")
  assert step == 6
  tokens = jnp.asarray([tokenizer.encode("a person walks forward and waves.", add_eos=True)], jnp.int32)
  base_logits, _ = nnx.jit(lambda m, t: m(t))(base, tokens)
  logits, _, _ = nnx.jit(lambda m, t: m(t, jnp.zeros(t.shape + (m.config.latent_dim,)),
                                        jnp.zeros_like(t)))(model, tokens)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(base_logits))


def test_killed_llamo_run_resumes_to_identical_losses(demo, tmp_path):
  straight = scalars(demo["workdir"] / "llamo", "train/loss")
  workdir = tmp_path / "llamo"
  # Killed exactly at the align -> joint boundary, then in the middle of joint.
  for stop in (2, 3, None):
    tasks.train_and_evaluate(llamo_config(demo, stop_after_steps=stop, eval_every=0), workdir)
  resumed = scalars(workdir, "train/loss")
  assert sorted(resumed) == list(range(1, 7))
  for step in range(1, 7):
    np.testing.assert_allclose(resumed[step], straight[step], rtol=1e-6, err_msg=f"step {step}")


def test_resume_refuses_a_checkpoint_from_an_unknown_stage(demo, tmp_path):
  workdir = tmp_path / "llamo"
  shutil.copytree(demo["workdir"] / "llamo", workdir)
  config = llamo_config(demo)
  with config.unlocked():
    config.stage_order = ("align", "joint")
    del config.stages["anneal"]
  (workdir / "config.json").unlink()
  with pytest.raises(checkpoints.IncompatibleCheckpointError, match="stage 'anneal'"):
    tasks.train_and_evaluate(config, workdir)


def test_two_processes_match_one(demo, tmp_path):
  """LLaMo on 2 local processes x 4 CPU devices (gloo) == 1 process x 8, across a stage switch."""
  wd = demo["workdir"]
  config = (f"configs/llamo.py:demo,pretrained={wd / 'lm' / 'pretrained'},vae_workdir={wd / 'vae'}")
  llamo = demo["config"].pipeline.llamo
  flags = ["--config.stages.align.steps=2", "--config.stages.joint.steps=1", "--config.stages.anneal.steps=1",
           "--config.log_every=1", "--config.eval_every=0", "--config.async_checkpoints=False",
           "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2",
           *(f"--config.{k}={llamo[k.split('.')[0]][k.split('.')[1]]}" for k in
             ("data.seq_len", "data.batch_size", "data.max_motion_tokens", "model.text_capacity",
              "model.motion_capacity", "model.flow_width"))]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env['PATH']}"
  losses = {}
  for name, (nproc, ndev) in {"multi": (2, 4), "single": (1, 8)}.items():
    run = subprocess.run(["bash", "launch/local_multiprocess.sh", str(nproc), str(ndev), config,
                          str(tmp_path / name), *flags],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    losses[name] = scalars(tmp_path / name, "train/loss")
  assert sorted(losses["single"]) == [1, 2, 3, 4]
  for step in range(1, 5):
    np.testing.assert_allclose(losses["multi"][step], losses["single"][step], rtol=1e-5, err_msg=f"step {step}")


def test_caption_use_measures_what_dropping_the_caption_changes(demo):
  task, model, _ = tasks.restore_for_eval(llamo_config(demo), demo["workdir"] / "llamo")
  loader = task.make_loader("val", seed=0, process_index=0, process_count=1, mix={"t2m": 1.0})
  batch = task.global_batch(next(loader))
  cond_mask = batch.pop("cond_mask")
  # Dropping nothing changes nothing; the all-positions term is the ordinary flow loss.
  same = llamo_task._caption_use(model, batch, jnp.zeros_like(cond_mask), task.bom)
  assert float(same["t2m_first_flow_loss_nocaption"]) == float(same["t2m_first_flow_loss"])
  full = nnx.jit(lambda m, b: m.loss(b, jax.random.key(0))[1]["flow_loss"])(model, batch)
  np.testing.assert_allclose(float(same["t2m_flow_loss_nocaption"]), float(full), rtol=1e-6)
  # Dropping the caption changes what [BOM] sees, hence the first latent's loss.
  dropped = llamo_task._caption_use(model, batch, cond_mask, task.bom)
  assert float(dropped["t2m_first_flow_loss_nocaption"]) != float(dropped["t2m_first_flow_loss"])
  assert float(dropped["t2m_first_flow_loss"]) == float(same["t2m_first_flow_loss"])


def test_pytorch_export_of_the_run_matches_and_runs_without_jax(demo, tmp_path):
  """export --format=pytorch of the demo's LLaMo: the PyTorch model gives the restored JAX model's
  logits, and torch_generate samples from it with jax unimportable."""
  torch = pytest.importorskip("torch", reason='the PyTorch export needs the torch extra: pip install -e ".[torch]"')
  from llamo_jax import export as export_lib  # pylint: disable=g-import-not-at-top  (a program; this test only)
  from llamo_jax.pytorch import bundle as bundle_lib  # pylint: disable=g-import-not-at-top  (torch extra)
  out = export_lib.export(demo["workdir"] / "llamo", "pytorch", tmp_path / "torch")
  bundle = bundle_lib.load(out)
  _, model, _ = tasks.restore_for_eval(llamo_config(demo), demo["workdir"] / "llamo")
  tokens = np.asarray([bundle.t2m_prompt("a person walks forward.")], np.int32)
  zeros = np.zeros(tokens.shape, np.int32)
  latents = np.zeros(tokens.shape + (bundle.model.config.latent_dim,), np.float32)
  logits, _, _ = llamo_lib.for_inference(model)(jnp.asarray(tokens), jnp.asarray(latents),
                                                          jnp.asarray(zeros))
  with torch.no_grad():
    t_logits, _, _ = bundle.model(torch.as_tensor(tokens).long(), torch.as_tensor(latents),
                                  torch.as_tensor(zeros).long())
  np.testing.assert_allclose(t_logits.numpy(), np.asarray(logits), atol=1e-4, rtol=0)
  proc = run_without_jax("llamo_jax.torch_generate", f"--model={out}", "--prompt=a person jumps.",
                         f"--out={tmp_path / 'jump.npy'}", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  joints = np.load(tmp_path / "jump.npy")
  assert joints.ndim == 3 and joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
  # (Captioning from the command line without jax: tests/pytorch/test_parity.py.)
