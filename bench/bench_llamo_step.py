"""Where a LLaMo training step's time goes: one stage's step under config variants, side by side.

Reads a trained LLaMo run (WORKDIR/config.json: its base LM, VAE and latent records), builds that
stage's task, model and optimizer state at the run's config plus each variant's overrides, compiles
each step and times them in turn on the same train batches (so every variant sees the same machine
load). The weights are the run's initialisation, not its checkpoint: a step's time does not depend
on their values. Prints a table and replaces the bench_llamo_step section of BENCHMARKS.md.

  python bench/bench_llamo_step.py --workdir=workdirs/demo/llamo
"""
import json
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchmarks_md  # pylint: disable=g-import-not-at-top  (puts this checkout first on sys.path)

import jax  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from etils import epath  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

from llamo_jax import tasks  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.core import sharding  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training import runs  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training import train_step as train_step_lib  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training.stages import stage_plan  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training.state import build_model  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.training.state import stage_state  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)

_WORKDIR = flags.DEFINE_string("workdir", "workdirs/demo/llamo", "A trained LLaMo run (its config.json and "
                               "the base LM, VAE and latents it names).")
_STAGE = flags.DEFINE_string("stage", "joint", "The stage whose step is timed.")
_VARIANTS = flags.DEFINE_multi_string(
    "variant", ["{}", '{"model.k_t": 2}', '{"model.k_t": 1}', '{"model.two_forward_passes": 1}',
                '{"model.two_forward": 0.0}', '{"model.two_forward": 0.0, "model.k_t": 1}',
                '{"model.flow_width": 128}'],
    "JSON {dotted config key: value} overrides of the run's config, one per variant; {} is the run.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per variant (after 2 warm-up steps).")
_BATCHES = 4  # train batches cycled through, the same for every variant
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")


def _override(config, overrides: dict):
  """`config` with each dotted key set to its value; an unknown key is an error (a typo times nothing)."""
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *path, last = key.split(".")
    node = config
    for part in path:
      node = node[part]
    if last not in node:
      raise KeyError(f"--variant key {key!r} is not in the run's config.")
    node[last] = value
  return config


def _compiled_step(config, workdir, stage_name):
  """(compiled step fn, its state, train batches, compile s) of `stage_name` under `config`."""
  mesh = sharding.make_mesh(config.mesh.to_dict())
  rules = sharding.rules_from_config(config.get("logical_axis_rules", None))
  with sharding.mesh_context(mesh, rules):
    task = tasks.get_task(config, workdir, mesh)
    task.prepare()
    stages = {s.name: s for s in stage_plan(config)}
    if stage_name not in stages:
      raise ValueError(f"--stage={stage_name!r}: the run's stages are {sorted(stages)}.")
    stage = stages[stage_name]
    graphdef, state, tx, schedule = stage_state(task, build_model(config, task, mesh, rules), stage, mesh,
                                                stage.start)
    loader = task.make_loader("train", seed=config.seed + stage.index, process_index=0, process_count=1)
    batches = [task.global_batch(next(loader)) for _ in range(_BATCHES)]
    start = time.perf_counter()
    step_fn = train_step_lib.compile_train_step(config, task, stage, graphdef, tx, schedule, state,
                                                batches[0], mesh, rules)
    return step_fn, state, batches, time.perf_counter() - start


def main(argv):
  del argv
  workdir = epath.Path(_WORKDIR.value).absolute()
  base = runs.load_run_config(workdir, task="llamo")
  variants = [json.loads(v) for v in _VARIANTS.value]
  runners = []
  for overrides in variants:
    step_fn, state, batches, compile_s = _compiled_step(_override(base, overrides), workdir, _STAGE.value)
    runners.append({"fn": step_fn, "state": state, "batches": batches, "compile_s": compile_s, "times": []})
    print(f"compiled {overrides} in {compile_s:.1f} s", flush=True)
  for i in range(_STEPS.value + 2):  # variants in turn, so each sees the same load
    for r in runners:
      start = time.perf_counter()
      r["state"], _ = r["fn"](r["state"], r["batches"][i % _BATCHES])
      jax.block_until_ready(r["state"])
      if i >= 2:
        r["times"].append(time.perf_counter() - start)
  ref = statistics.median(runners[0]["times"])
  rows = []
  for overrides, r in zip(variants, runners):
    med = statistics.median(r["times"])
    name = ", ".join(f"`{k}={v}`" for k, v in overrides.items()) or "the run's config"
    rows.append(f"| {name} | {1e3 * med:.0f} ({1e3 * min(r['times']):.0f}-{1e3 * max(r['times']):.0f}) "
                f"| {med / ref:.2f} | {r['compile_s']:.1f} |")
  model, data = base.model, base.data
  intro = (
      f"`python bench/bench_llamo_step.py --workdir={_WORKDIR.value} --stage={_STAGE.value} "
      f"--steps={_STEPS.value}`: the {_STAGE.value} stage's whole train step (loss, gradient and "
      f"optimizer update), batch {data.batch_size} x {data.seq_len} tokens, flow head "
      f"{model.flow_width} x {model.flow_depth}, k_t {model.k_t}, two-forward {model.two_forward} over "
      f"{model.two_forward_passes} pass(es) in the run's config; each row changes the keys it names. "
      f"Milliseconds: median (min-max) of {_STEPS.value} steps after 2 warm-up steps, the variants "
      f"taking turns on the same {_BATCHES} train batches. jax {jax.__version__} "
      f"({jax.default_backend()}), {platform.processor() or platform.machine()}.")
  benchmarks_md.publish("bench_llamo_step", "LLaMo: where a training step's time goes (bench/bench_llamo_step.py)",
                        intro, ["variant", "ms per step", "vs the run", "compile s"], rows, write=_WRITE.value)


if __name__ == "__main__":
  app.run(main)
