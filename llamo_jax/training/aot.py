"""Ahead-of-time compile of the train step for a set of devices: memory per device, FLOPs, fit.

`compile_report(config, make_task, devices)` builds the trainer's train state as
ShapeDtypeStructs (`state.abstract_stage_state`: no weights), a batch of the task's
shapes (`Task.abstract_batch`: no data), and compiles the trainer's own step
(`train_step.compile_train_step`: same sharding rules, remat policy, gradient
accumulation, donation) for `devices`, e.g. the compile-only devices of a TPU
topology (`core.hardware.tpu_devices`). It reports per device HBM (arguments,
outputs, temporaries, total against the device's capacity), FLOPs per step, the
step time at 50% MFU, and the largest per-device batch that fits (a bounded search
over compiles).

FLOPs: `train_step.step_flops` (two small unscanned compiles; XLA's count of a scanned
step repeats no loop body), as the trainer counts them for its logged MFU;
`flops_lower_bound` says whether loops the partitioner added were left in them.
"""
from __future__ import annotations

import math
import re
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
from absl import logging
from etils import epath

from llamo_jax.core import hardware
from llamo_jax.core import sharding
from llamo_jax.training import runs
from llamo_jax.training import train_step
from llamo_jax.training.stages import Stage
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.state import abstract_stage_state

_OOM = re.compile(r"RESOURCE_EXHAUSTED|[Rr]an out of memory")
_SIZE = r"([\d.]+)\s*([KMGT]i?B?|bytes)?"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class DoesNotFitError(RuntimeError):
  """The train step needs more memory per device than the device has."""


def _bytes(value: str, unit: str | None) -> int:
  return int(float(value) * _UNITS.get((unit or " ")[0], 1))


def parse_oom(message: str) -> dict[str, int]:
  """Figures from an XLA out-of-memory compile error: {"total", "capacity"} when it says them."""
  for pattern in (rf"Used {_SIZE} of {_SIZE} hbm",
                  rf"required for .*?\({_SIZE}\) exceeds available HBM \({_SIZE}\)"):
    m = re.search(pattern, message)
    if m:
      return {"total": _bytes(m.group(1), m.group(2)), "capacity": _bytes(m.group(3), m.group(4))}
  return {}


def tree_bytes_per_device(tree: Any) -> int:
  """Bytes of one device's shards of a tree of sharded ShapeDtypeStructs / arrays."""
  total = 0
  for x in jax.tree.leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) else x.shape
    total += math.prod(shape) * jax.numpy.dtype(x.dtype).itemsize
  return total


class _Compiler:
  """Compiles the train step of one stage of `config` for `mesh` at any global batch."""

  def __init__(self, config, make_task, mesh, rules, stage_name: str | None):
    self.config, self.make_task, self.mesh, self.rules = config, make_task, mesh, rules
    self.task = self._task(config)
    plan = stage_plan(config)
    self.stage = self._choose_stage(plan, stage_name)
    self.graphdef, self.state, self.tx, self.schedule = abstract_stage_state(
        config, self.task, self.stage, mesh, rules)
    self.accum = int(config.get("grad_accum_steps", 1))
    self.compiles = 0

  def _task(self, config):
    workdir = epath.Path(tempfile.gettempdir()) / "llamo_jax_train_compile"  # never written
    task = self.make_task(config, workdir, self.mesh)
    task.prepare_shapes()
    return task

  def _choose_stage(self, plan: list[Stage], name: str | None) -> Stage:
    """The stage named, else the one with the most trainable parameters (largest optimizer state)."""
    if name:
      for stage in plan:
        if stage.name == name:
          return stage
      raise ValueError(f"--stage={name!r}: the config's stages are {[s.name for s in plan]}.")
    if len(plan) == 1:
      return plan[0]
    counts = {}
    for stage in plan:
      _, state, _, _ = abstract_stage_state(self.config, self.task, stage, self.mesh, self.rules)
      counts[stage.name] = sum(x.size for x in jax.tree.leaves(state["params"]))
    return max(plan, key=lambda s: counts[s.name])

  def batch(self, global_batch: int, task=None) -> dict[str, Any]:
    return train_step.abstract_batch(task or self.task, global_batch, self.mesh, self.rules)

  def compile(self, global_batch: int) -> tuple[Any | None, dict[str, Any]]:
    """(compiled step or None if it does not fit, memory figures per device)."""
    self.compiles += 1
    t0 = time.time()
    batch = self.batch(global_batch)
    try:
      compiled = train_step.compile_train_step(self.config, self.task, self.stage, self.graphdef, self.tx,
                                            self.schedule, self.state, batch, self.mesh, self.rules)
    except Exception as e:  # pylint: disable=broad-except  (XLA reports OOM as a runtime error)
      if not _OOM.search(str(e)):
        raise
      figures = parse_oom(str(e))
      logging.info("global batch %d: does not fit (%s) [%.0f s]", global_batch, str(e)[:300], time.time() - t0)
      return None, {"fits": False, "compile_seconds": time.time() - t0, "total": figures.get("total"),
                    "capacity": figures.get("capacity"), "message": str(e).splitlines()[0][:500]}
    mem = compiled.memory_analysis()
    figures = {"arguments": int(mem.argument_size_in_bytes), "outputs": int(mem.output_size_in_bytes),
               "aliased": int(mem.alias_size_in_bytes), "temporaries": int(mem.temp_size_in_bytes),
               "code": int(mem.generated_code_size_in_bytes), "compile_seconds": time.time() - t0}
    # Donated state: outputs reuse the arguments' buffers (aliased bytes count once).
    figures["total"] = (figures["arguments"] + figures["outputs"] - figures["aliased"] +
                        figures["temporaries"] + figures["code"])
    logging.info("global batch %d: %.2f GiB per device [%.0f s]", global_batch,
                 figures["total"] / hardware.GiB, figures["compile_seconds"])
    return compiled, figures

  def step_flops(self, global_batch: int) -> tuple[float, int]:
    return train_step.step_flops(self.config, self.make_task, self.stage, self.mesh, self.rules, global_batch,
                                 train_step.n_layers(self.task))

  def _llama_config(self):
    cfg = getattr(self.task, "model_config")
    return getattr(cfg, "llama", cfg)


def _count(tree: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))


def compile_report(config: ml_collections.ConfigDict, make_task: runs.TaskFactory,
                   devices: Sequence[jax.Device], *, topology: str, stage: str | None = None,
                   capacity_bytes: int | None = None, search_batch: bool = True,
                   max_compiles: int = 6, flops: bool = True,
                   on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
  """Compiles the train step of `config` for `devices` and reports its memory and FLOPs (module
  docstring). Trace happens under the mesh and rules, as in the trainer. `on_update(report)`
  gets the report so far after the step's compile, the FLOPs and the batch search (an 8B
  step takes minutes each: what is done is kept if the rest is interrupted)."""
  on_update = on_update or (lambda report: None)
  t_start = time.time()
  mesh = sharding.make_mesh(config.mesh.to_dict(), devices)
  rules = sharding.rules_from_config(config.get("logical_axis_rules", None))
  device = mesh.devices.flat[0]
  spec = hardware.device_spec(device.device_kind)
  capacity = capacity_bytes or (spec.memory_bytes if spec else None)
  with sharding.mesh_context(mesh, rules):
    compiler = _Compiler(config, make_task, mesh, rules, stage)
    global_batch = int(config.data.batch_size)
    dp = sharding.batch_shards(mesh, rules)
    sharding.check_global_batch(global_batch, mesh, rules, compiler.accum)
    compiled, mem = compiler.compile(global_batch)
    if compiled is None and mem.get("capacity"):
      capacity = mem["capacity"]
    fits = compiled is not None and (capacity is None or mem["total"] <= capacity)
    state = compiler.state
    report: dict[str, Any] = {
        "topology": topology,
        "num_slices": hardware.num_slices_of(list(devices)),
        "num_devices": len(devices),
        "device_kind": device.device_kind,
        "mesh": {k: int(v) for k, v in mesh.shape.items()},
        "stage": compiler.stage.name,
        "remat_policy": getattr(compiler._llama_config(), "remat_policy", None),
        "param_count": _count(state["params"]) + _count(state["frozen"]),
        "trainable_param_count": _count(state["params"]),
        "global_batch": global_batch,
        "grad_accum_steps": compiler.accum,
        "batch_per_device": global_batch // dp,
        "batch_shapes": {k: list(v.shape) for k, v in compiler.batch(global_batch).items()},
        "state_bytes_per_device": {k: tree_bytes_per_device(state[k])
                                   for k in ("params", "frozen", "opt_state")},
        "hbm_bytes_per_device": {"arguments": mem.get("arguments"), "outputs": mem.get("outputs"),
                                 "aliased": mem.get("aliased"), "temporaries": mem.get("temporaries"),
                                 "code": mem.get("code"), "total": mem.get("total"), "capacity": capacity},
        "fits": bool(fits) if capacity is not None else None,
        "compile_seconds": round(mem["compile_seconds"], 1),
    }
    if "message" in mem:
      report["compiler_message"] = mem["message"]
    on_update(report)
    if flops:
      per_device, loops = compiler.step_flops(global_batch)
      peak = spec.peak_flops if spec else None
      report["flops_per_device"] = per_device
      report["flops_lower_bound"] = loops > 0  # while loops XLA counted once (train_step.step_flops)
      report["flops_per_step"] = per_device * len(devices)
      report["peak_flops_per_device"] = peak
      report["step_seconds_at_50pct_mfu"] = per_device / (0.5 * peak) if peak else None
      on_update(report)
    if search_batch and capacity is not None:
      report.update(_search_batch(compiler, dp, global_batch, mem, fits, capacity, max_compiles))
  report["total_compiles"] = compiler.compiles
  report["wall_seconds"] = round(time.time() - t_start, 1)
  return report


def _search_batch(compiler: _Compiler, dp: int, global_batch: int, mem0: dict[str, Any], fits0: bool,
                  capacity: int, max_compiles: int) -> dict[str, Any]:
  """The largest per-device batch (a multiple of grad_accum_steps) whose step fits, within
  `max_compiles` compiles: affine extrapolation of memory from the fitting points, bisection
  between the largest fit and the smallest non-fit."""
  g = compiler.accum
  b0 = global_batch // dp
  fit = {b0: mem0["total"]} if fits0 else {}
  no_fit = set() if fits0 else {b0}
  while compiler.compiles < max_compiles:
    lo = max(fit) if fit else 0
    hi = min(no_fit) if no_fit else None
    if hi is not None and hi - lo <= g:
      break
    if len(fit) >= 2:
      (b1, m1), (b2, m2) = sorted(fit.items())[-2:]
      slope = (m2 - m1) / (b2 - b1)
      guess = lo + int((capacity - fit[lo]) / slope) if slope > 0 else 2 * lo
    elif fit:
      guess = 2 * lo
    else:
      guess = hi // 2
    guess = max(g, guess // g * g)
    if hi is not None:
      guess = min(guess, hi - g)
      if guess <= lo:
        guess = (lo + hi) // 2 // g * g
    if guess <= lo or guess in fit or guess in no_fit:
      guess = lo + g
      if (hi is not None and guess >= hi) or guess in fit or guess in no_fit:
        break
    _, mem = compiler.compile(guess * dp)
    if mem.get("total") is not None and mem.get("arguments") is not None and mem["total"] <= capacity:
      fit[guess] = mem["total"]
    else:
      no_fit.add(guess)
  best = max(fit) if fit else 0
  exact = bool(no_fit) and min(no_fit) - best <= g
  return {"max_batch_per_device": best, "max_batch_per_device_exact": exact,
          "batch_search": {"fits": {str(k): v for k, v in sorted(fit.items())},
                           "does_not_fit": sorted(no_fit)}}


def advice(report: dict[str, Any]) -> str:
  """What to change when the step does not fit (figures first)."""
  hbm = report["hbm_bytes_per_device"]
  need = hbm.get("total")
  lines = [f"The {report['stage']} step of this config does not fit {report['topology']}: "
           + (f"{need / hardware.GiB:.2f} GiB per device needed, " if need else "")
           + f"{hbm['capacity'] / hardware.GiB:.2f} GiB available."]
  state = report["state_bytes_per_device"]
  lines.append("State per device: " + ", ".join(f"{k} {v / hardware.GiB:.2f} GiB" for k, v in state.items()))
  mesh = report["mesh"]
  lines.append("Change one of: shard the state over more devices (config.mesh.fsdp, now "
               f"{mesh.get('fsdp')}, or a bigger topology); a remat policy that saves less "
               "(config.model.llama.remat_policy=full); a smaller batch per device "
               f"(now {report['batch_per_device']}"
               + (f"; {report['max_batch_per_device']} fits" if report.get("max_batch_per_device") else "")
               + ") with config.grad_accum_steps to keep the global batch.")
  return "\n".join(lines)
