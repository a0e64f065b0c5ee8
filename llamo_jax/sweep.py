"""Runs a config's hyperparameter sweep, one training workdir per point; summarizes a sweep.

  python -m llamo_jax.sweep --config=configs/lm.py:tiny --workdir=/tmp/sweep [--parallel=2] \
      [--config.total_steps=100 ...]              # overrides for every point
  python -m llamo_jax.sweep --config=configs/llamo_1b.py --workdir=gs://b/sweep --launcher=tpu \
      --tpu=my-tpu-{name} --zone=us-east5-a --launch_flag=--accelerator_type=v5p-64 ...
  python -m llamo_jax.sweep --config=configs/llamo_1b.py --workdir=/shared/sweep --launcher=slurm \
      --launch_flag=--nodes=4
  python -m llamo_jax.sweep --summarize=/tmp/sweep

The points come from the config file's `sweep(add)`; each runs in WORKDIR/NAME with its
overrides recorded in WORKDIR/NAME/sweep_point.json. Rerunning the same command resumes:
finished points are skipped, partial ones resume from their checkpoints. `--dry_run` prints
the commands and writes nothing. --launcher=local runs `python -m llamo_jax.train`
(--parallel at a time, each logging to WORKDIR/NAME/train.log); tpu runs launch/tpu_pod.sh
per point (one slice per point when --tpu contains {name}, else one after the other);
slurm submits launch/slurm_gpu.sbatch per point with sbatch and returns.
"""
from __future__ import annotations

import concurrent.futures
import shlex
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
from etils import epath
from ml_collections import config_flags

from llamo_jax.training import sweeps

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with a sweep(add) function (configs/NAME.py[:arg]); --config.x=v "
    "overrides apply to every point.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep root: one workdir per point under it (may be gs://).")
_SUMMARIZE = flags.DEFINE_string("summarize", None, "Print the table of a sweep root's points and final metrics.")
_LAUNCHER = flags.DEFINE_enum("launcher", "local", sweeps.LAUNCHERS, "How each point runs.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points run at the same time (local and tpu launchers).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the command of every point to run; run and write nothing.")
_TPU = flags.DEFINE_string("tpu", "", "--launcher=tpu: the TPU VM name ({name}: the point's name in "
                           "TPU-name characters, e.g. lr-0-003: one slice per point).")
_ZONE = flags.DEFINE_string("zone", "", "--launcher=tpu: the zone.")
_LAUNCH_FLAGS = flags.DEFINE_multi_string(
    "launch_flag", [], "Passed to the launcher before the run's arguments (tpu_pod.sh options, sbatch options, "
    "or train flags for --launcher=local); repeat for several.")


def _run_local(cmd: list[str], workdir: epath.Path) -> int:
  """Runs `cmd`, its output appended to WORKDIR/train.log (copied there at the end if not local)."""
  log = workdir / "train.log"
  local = "://" not in str(workdir)
  with (open(log, "ab") if local else tempfile.TemporaryFile()) as out:
    out.write(f"$ {shlex.join(cmd)}\n".encode())
    out.flush()
    code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if not local:
      out.seek(0)
      log.write_bytes((log.read_bytes() if log.exists() else b"") + out.read())
  return code


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _SUMMARIZE.value:
    print(sweeps.format_table(sweeps.summarize(_SUMMARIZE.value)))
    return
  if not _WORKDIR.value or flags.FLAGS["config"].value is None:
    raise app.UsageError("Pass --config=configs/NAME.py[:arg] and --workdir=ROOT (or --summarize=ROOT).")
  spec = config_flags.get_config_filename(flags.FLAGS["config"])
  common = {f"config.{k}": v for k, v in config_flags.get_override_values(flags.FLAGS["config"]).items()}
  root = epath.Path(_WORKDIR.value)
  points = sweeps.expand(spec)

  todo = []
  for point in points:
    workdir = root / point.name
    status = sweeps.status(workdir)
    overrides = {**common, **point.overrides}
    cmd = sweeps.launch_command(_LAUNCHER.value, spec, workdir, overrides, name=point.name,
                                launch_flags=_LAUNCH_FLAGS.value, tpu=_TPU.value, zone=_ZONE.value)
    if status.state == "finished":
      print(f"[done]    {point.name} (step {status.step}/{status.total})")
    else:
      print(f"[{status.state:7s}] {point.name}: {shlex.join(cmd)}")
      todo.append((point, workdir, cmd))
  print(f"{len(points)} points, {len(todo)} to run, under {root}", flush=True)
  if _DRY_RUN.value or not todo:
    return
  sweeps.record(root, spec, common, points)

  if _LAUNCHER.value == "slurm":
    failed = [p.name for p, _, cmd in todo if subprocess.run(cmd, check=False).returncode != 0]
  else:
    parallel = _PARALLEL.value if _LAUNCHER.value == "local" or "{name}" in _TPU.value else 1
    with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
      codes = {p.name: pool.submit(_run_local, cmd, workdir) for p, workdir, cmd in todo}
      failed = [name for name, code in codes.items() if code.result() != 0]
  if failed:
    print(f"{len(failed)} points failed (logs: WORKDIR/NAME/train.log): {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)
  if _LAUNCHER.value != "slurm":
    print(sweeps.format_table(sweeps.summarize(root)))


if __name__ == "__main__":
  app.run(main)
