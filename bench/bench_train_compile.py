"""Ahead-of-time compiles of the paper recipes for TPU pods: memory per chip, FLOPs, fit.

  pip install -e ".[tpu]"   # libtpu: compiles for TPU topologies on this CPU
  python bench/bench_train_compile.py [--only=NAME,...] [--timeout=3600] [--write]

Each entry runs `python -m llamo_jax.train_compile --config=... --topology=... --out=...`
(the command is in the table) and keeps its JSON report in bench/train_compile/NAME.json; an
entry whose report is there is not compiled again (--rerun to redo). The table is built from
the reports present and written into BENCHMARKS.md (section bench_train_compile).
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from absl import app
from absl import flags

import benchmarks_md  # bench/benchmarks_md.py
from llamo_jax.core import hardware

REPO = pathlib.Path(__file__).resolve().parents[1]
REPORTS = REPO / "bench" / "train_compile"

# name -> (config, topology, extra flags). LLaMo: the joint stage (train_compile's default: the
# stage with the most trainable parameters),
# the paper's global batch 128 x 512 tokens (configs/llamo.py), pure FSDP over the slice
# (mesh preset tpu). 256 chips are more than 128 rows: there the mesh adds tensor=2.
ENTRIES = {
    "llamo_8b.v5p-64": ("configs/llamo_8b.py", "v5p-64", []),
    "llamo_1b.v5p-64": ("configs/llamo_1b.py", "v5p-64", []),
    "motion_vae_paper.v5p-64": ("configs/motion_vae.py:paper", "v5p-64", []),
    "llamo_8b.v5p-64.remat_full": ("configs/llamo_8b.py", "v5p-64",
                                   ["--config.model.llama.remat_policy=full"]),
    "llamo_8b.v5p-64.remat_none": ("configs/llamo_8b.py", "v5p-64",
                                   ["--config.model.llama.remat_policy=none"]),
    "llamo_3b.v5p-64": ("configs/llamo_3b.py", "v5p-64", []),
    "llamo_8b.v5p-128": ("configs/llamo_8b.py", "v5p-128", []),
    "llamo_1b.v5e-256": ("configs/llamo_1b.py", "v5e-256", ["--config.mesh.tensor=2"]),
    "llamo_8b.v5e-256": ("configs/llamo_8b.py", "v5e-256", ["--config.mesh.tensor=2"]),
    "llamo_8b.v4-128": ("configs/llamo_8b.py", "v4-128", []),
    "llamo_8b.v6e-256": ("configs/llamo_8b.py", "v6e-256", ["--config.mesh.tensor=2"]),
    "llamo_1b.v5p-128": ("configs/llamo_1b.py", "v5p-128", []),
    "llamo_3b.v5p-128": ("configs/llamo_3b.py", "v5p-128", []),
    "llamo_3b.v5e-256": ("configs/llamo_3b.py", "v5e-256", ["--config.mesh.tensor=2"]),
}

_ONLY = flags.DEFINE_list("only", None, "Entries to compile (default: all, in the order above).")
_TIMEOUT = flags.DEFINE_integer("timeout", 3600, "Seconds per entry.")
_RERUN = flags.DEFINE_bool("rerun", False, "Compile entries whose report exists again.")
_COMPILE = flags.DEFINE_bool("compile", True, "Compile missing entries (else only build the table).")
_MAX_COMPILES = flags.DEFINE_integer("max_compiles", 1, "train_compile --max_compiles (1: no batch search).")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def command(name: str) -> list[str]:
  config, topology, extra = ENTRIES[name]
  search = (["--search_batch=false"] if _MAX_COMPILES.value <= 1 else
            [f"--max_compiles={_MAX_COMPILES.value}"])
  return ["python", "-m", "llamo_jax.train_compile", f"--config={config}", f"--topology={topology}",
          *extra, *search, f"--out=bench/train_compile/{name}.json"]


def run(name: str) -> None:
  REPORTS.mkdir(parents=True, exist_ok=True)
  log = REPORTS / f"{name}.log"
  t0 = time.time()
  with open(log, "w") as f:
    try:
      # This interpreter, not whichever `python` is first on PATH.
      proc = subprocess.run([sys.executable, *command(name)[1:]], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                            timeout=_TIMEOUT.value, env={**os.environ, "JAX_PLATFORMS": "cpu"})
      status = f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
      status = f"timed out after {_TIMEOUT.value} s"
  print(f"{name}: {status} in {time.time() - t0:.0f} s (log {log})", flush=True)


def gib(n) -> str:
  return "-" if n is None else f"{n / 2 ** 30:.1f}"


def row(name: str, report: dict) -> str:
  config, topology, extra = ENTRIES[name]
  hbm = report["hbm_bytes_per_device"]
  remat = report.get("remat_policy") or "-"
  mesh = "x".join(f"{k}{v}" for k, v in report["mesh"].items() if v > 1)
  flops = report.get("flops_per_step")
  step = report.get("step_seconds_at_50pct_mfu")
  tokens = report["global_batch"] * report["batch_shapes"].get("tokens", [0, 0])[1]
  best = report.get("max_batch_per_device")
  best = "-" if best is None else f"{best}{'' if report.get('max_batch_per_device_exact') else ' (>=)'}"
  return (f"| {pathlib.Path(config.split(':')[0]).stem}{':' + config.split(':')[1] if ':' in config else ''} "
          f"| {report['stage']} | {topology} ({report['num_devices']} chips) | {mesh} | {remat} "
          f"| {report['param_count'] / 1e9:.2f}B ({report['trainable_param_count'] / 1e9:.2f}B trained) "
          f"| {report['global_batch']} ({report['batch_per_device']}/chip) "
          f"| {gib(hbm.get('arguments'))} | {gib(hbm.get('temporaries'))} | {gib(hbm.get('total'))} / {gib(hbm['capacity'])} "
          f"| {'yes' if report['fits'] else 'NO'} | {best} "
          f"| {'-' if flops is None else ('>= ' if report.get('flops_lower_bound') else '') + f'{flops / 1e15:.3g}'} "
          f"| {'-' if step is None else f'{step:.3g} s ({tokens / step / 1e3:.0f}k tok/s)' if tokens else f'{step * 1e3:.3g} ms'} "
          f"| {report['compile_seconds']:.0f} s{'' if report.get('complete') else ' (stopped before the FLOPs)'} |")


def row_from_log(name: str) -> str | None:
  """A row from train_compile's log lines when the run stopped before its first report
  (`global batch N: X GiB per device [T s]`): the total per chip and the compile time only."""
  config, topology, extra = ENTRIES[name]
  logs = [l for l in sorted(REPORTS.glob("*.log"))
          if re.fullmatch(re.escape(name) + r"(\.attempt\d+\.trimmed)?\.log", l.name)]
  for log in logs:
    m = re.search(r"global batch (\d+): ([\d.]+) GiB per device \[(\d+) s\]", log.read_text())
    if m:
      gen = topology.split("-")[0]
      hbm = next(spec.memory_bytes for _, spec in hardware.DEVICE_SPECS if spec.name == gen) / 2 ** 30
      fits = "yes" if float(m.group(2)) <= hbm else "NO"
      return (f"| {config} {' '.join(extra)} | (log {log.name}) | {topology} | | | | {m.group(1)} | | "
              f"| {m.group(2)} / {hbm:.1f} | {fits} | | | | {m.group(3)} s (stopped before the report) |")
  return None


def main(argv):
  del argv
  names = _ONLY.value or list(ENTRIES)
  unknown = sorted(set(names) - set(ENTRIES))
  if unknown:
    sys.exit(f"unknown entries {unknown}; known: {sorted(ENTRIES)}")
  if _COMPILE.value:
    for name in names:
      path = REPORTS / f"{name}.json"
      if _RERUN.value or not path.exists() or not json.loads(path.read_text()).get("complete"):
        run(name)
  rows, missing = [], []
  for name in ENTRIES:
    path = REPORTS / f"{name}.json"
    from_log = None if path.exists() else row_from_log(name)
    if path.exists():
      rows.append(row(name, json.loads(path.read_text())))
    elif from_log:
      rows.append(from_log)
    else:
      missing.append(f"`{' '.join(command(name))}`")
  intro = "\n".join([
      "`python bench/bench_train_compile.py` (each row: `python -m llamo_jax.train_compile "
      "--config=CONFIG --topology=TOPOLOGY [flags]`, report in bench/train_compile/NAME.json). The "
      "trainer's own step (sharding rules, remat, accumulation, donation) compiled by libtpu for the "
      "topology on a CPU, from abstract state: no TPU, weights or data. HBM per chip in GiB: "
      "arguments (state + batch shards), temporaries, total (arguments + outputs - donated + "
      "temporaries + code) against the chip's capacity. PFLOP/step: what XLA executes over all chips "
      "(remat recomputation included, from the compiled cost analysis of 1- and 2-layer unscanned "
      "variants, as scanned layers are counted once; '>=': loops the partitioner added were left in "
      "those compiles, so the count is a lower bound). Step @50% MFU: that FLOP count at half the "
      "chip's dense bf16 peak. Compile: seconds for the full step on this shared 2-core CPU.",
      "" if not missing else "Not compiled yet (timed out or not run on this machine):\n" +
      "\n".join(f"- {m}" for m in missing)])
  benchmarks_md.publish(
      "bench_train_compile", "Train step compiled for TPU pods (train_compile)", intro,
      ["config", "stage", "topology", "mesh", "remat", "params", "global batch", "args GiB", "temps GiB",
       "total / HBM GiB", "fits", "max batch/chip", "PFLOP/step", "step @50% MFU", "compile"],
      rows, write=_WRITE.value)


if __name__ == "__main__":
  app.run(main)
