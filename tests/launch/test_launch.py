"""launch/ scripts through their dry runs: the printed commands, and arguments that survive quoting."""
import os
import pathlib
import shlex
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TRICKY = ["--config.data.corpus.dir=/data/my corpus", "--config.tokenizer=it's \"quoted\" $HOME `x` ;|&"]


def dry_run(script: str, *args: str, env: dict | None = None) -> list[list[str]]:
  """The commands `launch/SCRIPT` prints with DRY_RUN=1, each split back into its argv."""
  run = subprocess.run(["bash", f"launch/{script}", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=30, env={**os.environ, "DRY_RUN": "1", **(env or {})})
  assert run.returncode == 0, run.stderr
  return [shlex.split(line) for line in run.stdout.splitlines() if line and not line.startswith("#")]


def remote_argv(cmd: list[str]) -> list[str]:
  """The argv the remote shell runs for a `gcloud ... ssh --command STRING` (after `cd ... &&`)."""
  command = cmd[cmd.index("--command") + 1]
  _, sep, rest = command.partition(" && ")
  assert sep, command
  return shlex.split(rest)


def test_tpu_pod_creates_sets_up_runs_and_deletes_with_quoted_args():
  cmds = dry_run("tpu_pod.sh", "--accelerator_type=v5p-64", "--version=v2-alpha-tpuv5", "--delete",
                 "my-tpu", "us-east5-a", "configs/llamo_1b.py", "gs://bucket/runs/a b", *TRICKY)
  assert cmds[0] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu", "--zone=us-east5-a",
                     "--accelerator-type=v5p-64", "--version=v2-alpha-tpuv5"]
  assert cmds[1][:3] == ["git", "-C", str(REPO)] and "archive" in cmds[1]
  assert cmds[2][4:6] == ["scp", cmds[1][-2]] and "--worker=all" in cmds[2]
  setup = cmds[3]
  assert setup[4] == "ssh" and "--worker=all" in setup and "pip install" in setup[setup.index("--command") + 1]
  train = remote_argv(cmds[4])
  assert train == ["python", "-m", "llamo_jax.train", "--distributed", "--config=configs/llamo_1b.py",
                   "--workdir=gs://bucket/runs/a b", *TRICKY]
  assert cmds[5] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu", "--zone=us-east5-a", "--quiet"]
  assert len(cmds) == 6


def test_tpu_pod_reuses_an_existing_slice():
  cmds = dry_run("tpu_pod.sh", "--project=p", "my-tpu", "z", "configs/lm.py:tiny", "gs://b/r")
  assert len(cmds) == 1 and cmds[0][4] == "ssh" and "--project=p" in cmds[0]
  assert remote_argv(cmds[0])[-2:] == ["--config=configs/lm.py:tiny", "--workdir=gs://b/r"]


def test_tpu_pod_refuses_unknown_options():
  run = subprocess.run(["bash", "launch/tpu_pod.sh", "--dryrun", "t", "z", "c", "w"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
  assert run.returncode == 2 and "unknown option --dryrun" in run.stderr


def test_tpu_multislice_sets_megascale_per_slice():
  cmds = dry_run("tpu_multislice.sh", "--accelerator_type=v5p-64", "--version=v2-alpha-tpuv5", "--delete",
                 "ms", "us-east5-a", "2", "configs/llamo_8b.py", "gs://b/run", *TRICKY)
  assert cmds[0][:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
  assert "--node-count=2" in cmds[0] and "--node-prefix=ms" in cmds[0]
  runs = [c for c in cmds if c[4:5] == ["ssh"] and "llamo_jax.train" in c[c.index("--command") + 1]]
  assert [c[5] for c in runs] == ["ms-0", "ms-1"]
  for slice_id, cmd in enumerate(runs):
    argv = remote_argv(cmd)
    assert argv[:5] == ["env", "MEGASCALE_COORDINATOR_ADDRESS=COORDINATOR_IP:8080", "MEGASCALE_NUM_SLICES=2",
                        f"MEGASCALE_SLICE_ID={slice_id}", "MEGASCALE_PORT=8080"]
    assert argv[5:] == ["python", "-m", "llamo_jax.train", "--distributed", "--config=configs/llamo_8b.py",
                        "--workdir=gs://b/run", *TRICKY]
  assert cmds[-1][3:5] == ["queued-resources", "delete"]


def test_slurm_srun_line():
  cmds = dry_run("slurm_gpu.sbatch", "configs/llamo_1b.py", "/shared/runs/x", *TRICKY)
  assert cmds == [["srun", "--kill-on-bad-exit=1", "python", "-m", "llamo_jax.train", "--distributed",
                   "--config=configs/llamo_1b.py", "--workdir=/shared/runs/x", *TRICKY]]


def test_local_multiprocess_one_command_per_process():
  cmds = dry_run("local_multiprocess.sh", "2", "4", "configs/lm.py:tiny", "/tmp/run", *TRICKY)
  assert [c[c.index("--process_id=0") if "--process_id=0" in c else c.index("--process_id=1")] for c in cmds] \
      == ["--process_id=0", "--process_id=1"]
  assert all(c[-2:] == TRICKY and "--num_processes=2" in c for c in cmds)


@pytest.mark.parametrize("script", ["tpu_pod.sh", "tpu_multislice.sh", "slurm_gpu.sbatch", "local_multiprocess.sh"])
def test_scripts_parse(script):
  assert subprocess.run(["bash", "-n", f"launch/{script}"], cwd=REPO, timeout=30).returncode == 0
