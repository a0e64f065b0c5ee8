"""Sweeps: expansion of a config's sweep(add), resume of finished points, the summary table,
the tpu/slurm commands, and (slow) a 2x2 sweep of configs/lm.py:tiny run to the end."""
import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest
from clu import metric_writers
from etils import epath

from llamo_jax.training import sweeps

REPO = pathlib.Path(__file__).resolve().parents[2]


def sweep_config(tmp_path, body: str = "") -> pathlib.Path:
  """A config file standing for configs/lm.py with a 2x2 sweep (lr x b2)."""
  path = tmp_path / "lm_sweep.py"
  path.write_text(
      "from llamo_jax.core.config_files import sibling_config\n"
      f"def get_config(arg=None):\n  return sibling_config({str(REPO / 'configs' / 'lm.py')!r}, 'lm', arg)\n"
      + (body or "def sweep(add):\n  for lr in (1e-3, 3e-3):\n    for b2 in (0.95, 0.99):\n"
                 "      add(**{'config.optimizer.lr': lr, 'config.optimizer.b2': b2})\n"))
  return path


def run_sweep(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "llamo_jax.sweep", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def fake_run(workdir: pathlib.Path, *, total: int, saved: int | None, loss: float) -> None:
  """A workdir as the trainer leaves it: config.json, a checkpoint at `saved`, TensorBoard scalars."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps({"task": "lm", "total_steps": total, "optimizer": {}}))
  if saved is not None:
    step_dir = workdir / "checkpoints" / str(saved)
    step_dir.mkdir(parents=True)
    (step_dir / "_CHECKPOINT_METADATA").write_text("{}")
    (step_dir / "commit_success.txt").write_text("")
  writer = metric_writers.create_default_writer(str(workdir / "tensorboard"))
  writer.write_scalars(1, {"train/loss": loss + 1, "train/tokens_per_sec": 9.0})
  writer.write_scalars(saved or 1, {"train/loss": loss, "eval/loss": loss + 0.5, "steps_per_sec": 3.0})
  writer.close()


def test_expand_names_and_checks_points(tmp_path):
  points = sweeps.expand(f"{sweep_config(tmp_path)}:tiny")
  assert [p.name for p in points] == ["lr=0.001,b2=0.95", "lr=0.001,b2=0.99", "lr=0.003,b2=0.95",
                                      "lr=0.003,b2=0.99"]
  assert points[3].overrides == {"config.optimizer.lr": 3e-3, "config.optimizer.b2": 0.99}
  assert len(sweeps.expand(str(REPO / "configs" / "llamo.py"))) == 6
  bad = sweep_config(tmp_path, "def sweep(add):\n  add(**{'config.optimizer.lrr': 1.0})\n")
  with pytest.raises(ValueError, match="config.optimizer.lrr"):
    sweeps.expand(str(bad))
  twice = sweep_config(tmp_path, "def sweep(add):\n  add(**{'config.seed': 1})\n  add(**{'config.seed': 1})\n")
  with pytest.raises(ValueError, match="more than once"):
    sweeps.expand(str(twice))
  (tmp_path / "nosweep.py").write_text("def get_config(arg=None):\n  return None\n")
  with pytest.raises(ValueError, match="no sweep"):
    sweeps.expand(str(tmp_path / "nosweep.py"))


def test_status_from_checkpoints(tmp_path):
  fake_run(tmp_path / "done", total=4, saved=4, loss=1.0)
  fake_run(tmp_path / "half", total=4, saved=2, loss=1.0)
  (tmp_path / "half" / "checkpoints" / "4.orbax-checkpoint-tmp-123").mkdir()  # an unfinished save
  assert sweeps.status(tmp_path / "done") == sweeps.Status("finished", 4, 4)
  assert sweeps.status(tmp_path / "half") == sweeps.Status("partial", 2, 4)
  assert sweeps.status(tmp_path / "none").state == "new"
  assert sweeps.final_metrics(tmp_path / "done") == {"train/loss": 1.0, "eval/loss": 1.5}


def test_resume_skips_finished_points_and_summary_reads_metrics(tmp_path):
  config = f"{sweep_config(tmp_path)}:tiny"
  root = tmp_path / "sweep"
  points = sweeps.expand(config)
  common = {"config.total_steps": 4}
  sweeps.record(root, config, common, points)
  for i, point in enumerate(points[:3]):
    fake_run(root / point.name, total=4, saved=4 if i < 2 else 2, loss=float(i))
  dry = run_sweep(f"--config={config}", f"--workdir={root}", "--config.total_steps=4", "--dry_run")
  assert dry.returncode == 0, dry.stderr
  lines = dry.stdout.splitlines()
  assert [l.split()[0] for l in lines[:4]] == ["[done]", "[done]", "[partial]", "[new", ]
  assert lines[4] == f"4 points, 2 to run, under {root}"
  argv = shlex.split(lines[2].split(": ", 1)[1])
  assert argv[1:] == ["-m", "llamo_jax.train", f"--config={config}", f"--workdir={root / points[2].name}",
                      "--config.total_steps=4", "--config.optimizer.lr=0.003", "--config.optimizer.b2=0.95"]

  table = sweeps.format_table(sweeps.summarize(root)).splitlines()
  assert table[0].split() == ["point", "state", "step", "optimizer.b2", "optimizer.lr", "eval/loss", "train/loss"]
  assert table[1].split() == ["lr=0.001,b2=0.95", "finished", "4/4", "0.95", "0.001", "0.5", "0"]
  assert table[3].split() == ["lr=0.003,b2=0.95", "partial", "2/4", "0.95", "0.003", "2.5", "2"]
  assert table[4].split() == ["lr=0.003,b2=0.99", "new", "0/0", "0.99", "0.003"]

  with pytest.raises(ValueError, match="use another --workdir"):
    sweeps.record(root, config, {"config.total_steps": 5}, points)


def test_tpu_and_slurm_commands(tmp_path):
  config = f"{sweep_config(tmp_path)}:tiny"
  tpu = run_sweep(f"--config={config}", f"--workdir={tmp_path / 't'}", "--launcher=tpu", "--tpu=t-{name}",
                  "--zone=us-east5-a", "--launch_flag=--accelerator_type=v5p-8", "--dry_run")
  assert tpu.returncode == 0, tpu.stderr
  first = shlex.split(tpu.stdout.splitlines()[0].split(": ", 1)[1])
  assert first == ["launch/tpu_pod.sh", "--accelerator_type=v5p-8", "t-lr-0-001-b2-0-95", "us-east5-a", config,
                   str(tmp_path / "t" / "lr=0.001,b2=0.95"), "--config.optimizer.lr=0.001", "--config.optimizer.b2=0.95"]
  slurm = run_sweep(f"--config={config}", f"--workdir={tmp_path / 's'}", "--launcher=slurm",
                    "--launch_flag=--nodes=2", "--config.total_steps=7", "--dry_run")
  assert slurm.returncode == 0, slurm.stderr
  last = shlex.split(slurm.stdout.splitlines()[3].split(": ", 1)[1])
  workdir = tmp_path / "s" / "lr=0.003,b2=0.99"
  assert last == ["sbatch", "--job-name=lr=0.003,b2=0.99", f"--output={workdir}/slurm-%j.out", "--nodes=2",
                  "launch/slurm_gpu.sbatch", config, str(workdir), "--config.total_steps=7",
                  "--config.optimizer.lr=0.003", "--config.optimizer.b2=0.99"]
  assert not (tmp_path / "s").exists()  # a dry run writes nothing
  on_gcs = sweeps.launch_command("slurm", config, epath.Path("gs://b/s/x"), {}, name="x")
  assert on_gcs[2] == "--output=slurm-x-%j.out" and on_gcs[-1] == "gs://b/s/x"  # SLURM logs to a local path
  with pytest.raises(ValueError, match="--tpu=NAME"):
    sweeps.launch_command("tpu", config, tmp_path, {})


@pytest.mark.slow
def test_2x2_lm_tiny_sweep_runs_to_the_end(tmp_path, caption_corpus_dir):
  config = f"{sweep_config(tmp_path)}:tiny,corpus_dir={caption_corpus_dir}"
  root = tmp_path / "sweep"
  small = ["--config.total_steps=4", "--config.log_every=2", "--config.eval_every=4", "--config.eval_batches=1",
           "--config.checkpoint_every=4", "--config.tokenizer_vocab_size=300", "--config.data.seq_len=32",
           "--config.data.batch_size=8", "--config.optimizer.warmup_steps=1"]
  run = run_sweep(f"--config={config}", f"--workdir={root}", "--parallel=2", *small, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  rows = sweeps.summarize(root)
  assert len(rows) == 4 and all(r["state"] == "finished" and r["step"] == 4 for r in rows)
  assert all({"train/loss", "eval/loss"} <= set(r["metrics"]) for r in rows)
  by_lr = {r["overrides"]["config.optimizer.lr"]: r["metrics"]["train/loss"] for r in rows}
  assert by_lr[3e-3] != by_lr[1e-3]
  again = run_sweep(f"--config={config}", f"--workdir={root}", *small, timeout=300)
  assert again.returncode == 0 and again.stdout.count("[done]") == 4 and "0 to run" in again.stdout
