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
import types

from flax import nnx
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llamo_jax import evaluate
from llamo_jax.training import checkpoints
from llamo_jax.convert import pretrained
from llamo_jax import tasks
from llamo_jax.models import llamo as llamo_lib
from llamo_jax.tasks import llamo as llamo_task
from llamo_jax.core import sharding
from llamo_jax.data import records
from llamo_jax.training import runs
from helpers import load_config, override, run_without_jax, scalars, tags
from tests.eval.fake_evaluator import FakeEvaluator

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


def restore_params(demo, step=None, workdir=None, weights="ema", **overrides):
  """Flat {path: array} of every param (trainable and frozen) of the demo's LLaMo (or of the run in
  `workdir`) at `step`."""
  _, model, _ = tasks.restore_for_eval(llamo_config(demo, **overrides), workdir or demo["workdir"] / "llamo",
                                       step, weights)
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


def test_weight_ema_averages_what_each_stage_trains_and_leaves_training_alone(demo, tmp_path):
  workdir = tmp_path / "llamo"
  tasks.train_and_evaluate(llamo_config(demo, eval_every=0, ema_decay=0.9), workdir)
  trained = restore_params(demo, workdir=workdir, weights="trained", ema_decay=0.9)
  ema = restore_params(demo, workdir=workdir, ema_decay=0.9)
  for k, v in restore_params(demo, 6).items():  # the run without an EMA
    np.testing.assert_allclose(trained[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
  moved = {k for k in ema if not np.array_equal(ema[k], trained[k])}
  # joint trained the motion expert and anneal the heads: each one's average lags; the text path
  # is trained by no stage and stays the base model's.
  assert any(k.startswith("layers.motion.") for k in moved) and any(k.startswith("flow_head.") for k in moved)
  assert not any(k.startswith(("layers.text.", "embed.", "final_norm.")) for k in moved)


def test_an_lm_export_another_run_finished_first_is_used(demo, tmp_path, monkeypatch):
  out = tmp_path / "pretrained"

  def export_that_loses_the_race(lm_workdir, out_dir):  # the other run's rename lands first
    shutil.copytree(demo["workdir"] / "lm" / "pretrained", out_dir)
    raise pretrained.PretrainedDirError(f"{out_dir} already contains a pretrained checkpoint")

  monkeypatch.setattr(llamo_task, "export_lm_workdir", export_that_loses_the_race)
  config = llamo_config(demo, **{"base.pretrained": str(out)})
  llamo_task.LLaMoTask(config, tmp_path / "run", sharding.make_mesh(config.mesh.to_dict())).prepare()
  assert pretrained.is_pretrained_dir(out)


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


@pytest.mark.slow  # ~2 min; two processes == one is covered in the default run for the LM (tests/test_multiprocess.py)
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
def _doubled_corpus(corpus: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """The smoke corpus's clips twice (48 clips, all in test.txt): R-precision needs 32."""
  for sub in ("new_joint_vecs", "texts", "attributes"):
    (out / sub).mkdir(parents=True)
  ids = []
  for path in sorted((corpus / "new_joint_vecs").glob("*.npy")):
    for copy in ("a", "b"):
      cid = f"{path.stem}{copy}"
      shutil.copy(path, out / "new_joint_vecs" / f"{cid}.npy")
      shutil.copy(corpus / "texts" / f"{path.stem}.txt", out / "texts" / f"{cid}.txt")
      shutil.copy(corpus / "attributes" / f"{path.stem}.json", out / "attributes" / f"{cid}.json")
      ids.append(cid)
  (out / "test.txt").write_text("\n".join(ids) + "\n")
  (out / "corpus.json").write_text(json.dumps({"fps": 20}))
  return out


@pytest.mark.slow  # ~90 s on the shared CPU (restore, generation and captioning compiles); the metrics and the
# protocol are covered by tests/eval and tests/test_evaluate_motions.py in the default run
def test_evaluate_with_an_evaluator_writes_the_three_rows(demo, tmp_path, monkeypatch):
  """python -m llamo_jax.evaluate --evaluator: rows Real / VAE / LLaMo, M2T, attributes; and the in-training pass."""
  reference = _doubled_corpus(demo["workdir"] / "corpus", tmp_path / "ref")
  workdir = demo["workdir"] / "llamo"
  task, model, step = tasks.restore_for_eval(llamo_config(demo), workdir)
  flags = types.SimpleNamespace(evaluator="fake", reference=str(reference), split="test", crop="protocol",
                                num_repeats=2, regenerate=True, seed=0, batch_size=48, max_clips=None, max_latents=4,
                                cfg_scale=None, flow_steps=None, exit_threshold=None, temperature=None,
                                flow_dtype=None, backbone_dtype=None, start_cfg_scale=None, start_latents=None,
                                mm_prompts=2, mm_samples=10,
                                max_caption_tokens=4, bertscore_model=None, continuations=["2"])
  out = tmp_path / "run"
  out.mkdir()
  evaluate.evaluate_llamo(task, model, step, out, FakeEvaluator(), flags)
  t2m = json.loads((out / "eval_t2m.json").read_text())
  assert list(t2m["rows"]) == ["Real motion", "VAE reconstruction", "LLaMo"]
  real, llamo = t2m["rows"]["Real motion"], t2m["rows"]["LLaMo"]
  assert real["t2m"]["r_precision"]["top3"]["mean"] > llamo["t2m"]["r_precision"]["top3"]["mean"] - 1e-9
  assert "multimodality" in llamo["t2m"] and "multimodality" not in real["t2m"]
  assert llamo["protocol"]["regenerated"] and not real["protocol"]["regenerated"]
  assert real["attributes"]["test"]["segments"] > 0.9 and "per_action" in llamo["attributes"]["test"]
  assert real["attributes"]["test"]["per_check"] and set(llamo["attributes"]["test"]["per_check"]) <= {
      "direction", "turn_side", "side", "seated_change", "pose", "lean", "twist", "hands", "count", "distance", "angle"}
  assert set(llamo["physical"]) == {"foot_skating", "peak_jerk", "auj", "penetration_mm", "floating_mm"}
  assert real["length"] == {"within": 1.0, "median_ratio": 1.0} and 0 <= llamo["length"]["within"] <= 1
  m2t = json.loads((out / "eval_m2t.json").read_text())
  assert set(m2t["rows"]["LLaMo"]["m2t"]) == {"bleu1", "bleu4", "rouge_l", "cider", "action_recall"}
  assert m2t["not_computed"] == {"bertscore": "no --bertscore_model given"} and len(m2t["captions"]) == 48
  table = (out / "eval_table.md").read_text()
  assert "| Real motion |" in table and "| LLaMo |" in table and "n/c" in table
  assert "| Real motion | test |" in table and "Captions name" in table
  assert "per_action" in llamo["continuations"]["2"]["attributes"]["test"]
  assert "| LLaMo after 2 real latents | test |" in table
  with pytest.raises(ValueError, match="reads mm272"):
    evaluate.evaluate_llamo(task, model, step, out, FakeEvaluator("mm272"), flags)

  # In-training evaluation: config.t2m_eval logs a one-pass R-precision and FID.
  monkeypatch.setattr(llamo_task.evaluator_lib, "load_evaluator", lambda path: FakeEvaluator())
  task.config = override(task.config, t2m_eval={"evaluator": "fake", "clips": 40, "split": "test",
                                                "reference": str(reference)})
  got = task.evaluator_metrics(model, step)
  assert set(got) == {"t2m_rprecision_top1", "t2m_rprecision_top2", "t2m_rprecision_top3", "t2m_fid"}
  assert 0.0 <= got["t2m_rprecision_top1"] <= got["t2m_rprecision_top3"] <= 1.0


def test_mirror_arg_sets_the_data_key_only_when_given():
  assert load_config("llamo", "demo,mirror=1").data.mirror is True
  # Absent otherwise: configs of runs trained before the key still match (resume).
  assert "mirror" not in load_config("llamo", "demo").data
  with pytest.raises(ValueError, match="mirror='yes'"):
    load_config("llamo", "demo,mirror=yes")


def test_mirror_encodes_the_mirrored_twin_of_the_vae_records(demo, tmp_path):
  """data.mirror: the VAE as trained encodes its records' twin with every train clip mirrored."""
  vae_dir = tmp_path / "vae"  # a copy: the shared run keeps its own latents
  shutil.copytree(demo["workdir"] / "vae", vae_dir, ignore=shutil.ignore_patterns("latents"))
  prepared = []
  for mirror in (False, True):
    config = llamo_config(demo, **{"data.mirror": mirror, "vae.workdir": str(vae_dir)})
    task = tasks.get_task(config, tmp_path / f"llamo_{mirror}", sharding.make_mesh(config.mesh.to_dict()))
    task.prepare()
    prepared.append(task)
  assert prepared[1].latents_path == str(vae_dir / "latents" / "synthetic_hml263_mirror_latents")
  base, mirrored = (records.open_dataset(t.latents_path) for t in prepared)
  assert mirrored.split_sizes["train"] == 2 * base.split_sizes["train"]
  assert mirrored.split_sizes["test"] == base.split_sizes["test"]
  source = mirrored.data_source("train")
  by_id = {r["clip_id"]: r for r in (records.decode(source[i]) for i in range(len(source)))}
  twins = [(by_id[i], by_id["M" + i]) for i in by_id if not i.startswith("M")]
  assert len(twins) == base.split_sizes["train"]
  assert any(not np.allclose(a["features"], b["features"]) for a, b in twins)
