"""The training loop shared by every task (language model, motion VAE, LLaMo stages).

One readable loop in banner-commented sections, big_vision style. Generic
machinery lives here and in its siblings (stages, state, runs, checkpoints); what
differs between objectives lives in `llamo_jax.tasks`, which hands the loop a task
factory (`tasks.train_and_evaluate`).
"""
from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
from etils import epath
from flax import nnx

from llamo_jax.core import hardware
from llamo_jax.core import paths
from llamo_jax.core import sharding
from llamo_jax.training import checkpoints
from llamo_jax.training import preemption as preemption_lib
from llamo_jax.training import runs
from llamo_jax.training import train_step as train_step_lib
from llamo_jax.training.stages import stage_at
from llamo_jax.training.stages import stage_plan
from llamo_jax.training.state import abstract_of
from llamo_jax.training.state import build_model
from llamo_jax.training.state import ema_filter
from llamo_jax.training.state import ema_model
from llamo_jax.training.state import stage_state

NonFiniteError = checkpoints.NonFiniteError  # a logged metric or the train state became NaN/inf


def _step_flops(config, task, stage, step_fn, mesh, rules, make_task, peak_flops, global_batch) -> float:
  """FLOPs of one step per device for the logged TFLOP/s and MFU; 0: not logged.

  XLA's count of the compiled step where it is complete; otherwise (scanned layers, gradient
  accumulation) `train_step.step_flops`' two small compiles, spent only where an MFU is
  logged (a device kind with a known peak, or config.peak_tflops_per_device)."""
  n_layers = train_step_lib.n_layers(task)
  if train_step_lib.xla_counts_all_flops(config, n_layers):
    return train_step_lib.compiled_flops(step_fn)
  if not peak_flops:
    return 0.0
  t0 = time.time()
  flops, _ = train_step_lib.step_flops(config, make_task, stage, mesh, rules, global_batch, n_layers)
  logging.info("stage %s: %.3g FLOPs per step per device (counted in %.0f s)", stage.name, flops, time.time() - t0)
  return flops


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def _check_finite(metrics: dict[str, float], step: int, last_saved: int | None) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    raise checkpoints.non_finite_error(f"Non-finite metrics {bad}", step, last_saved)


def run_pipeline(config: ml_collections.ConfigDict, workdir: epath.Path, make_task: runs.TaskFactory
                 ) -> dict[str, float]:
  """Runs `config.pipeline.NAME` for NAME in `config.pipeline_order`, each in WORKDIR/NAME.

  Each part is an ordinary (resumable) run; a finished part is skipped on a rerun
  because its checkpoint is already at its last step.
  """
  metrics = {}
  for name in config.pipeline_order:
    if name not in config.pipeline:
      raise ValueError(f"config.pipeline_order names {name!r} but config.pipeline has no such entry.")
    logging.info("pipeline part %s -> %s", name, workdir / name)
    part = train_and_evaluate(runs.resolve_workdir(config.pipeline[name], workdir), workdir / name, make_task)
    metrics.update({f"{name}/{k}": v for k, v in part.items()})
  if jax.process_index() == 0:
    lines = [f"Done. Outputs under {workdir}:"]
    for name in config.pipeline_order:
      lines.append(f"  {name}: checkpoints {workdir / name / 'checkpoints'}, "
                   f"TensorBoard {workdir / name / 'tensorboard'}")
      samples = sorted((workdir / name / "samples").glob("step_*"), key=lambda p: int(p.name[5:]))
      if samples:
        lines.append(f"  {name} samples (motion .npy/.gif, captions.json): {samples[-1]}")
    lines.append(f"  tensorboard --logdir {workdir}")
    print("\n".join(lines), flush=True)
  return metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | epath.Path, make_task: runs.TaskFactory
                       ) -> dict[str, float]:
  """Trains the task `make_task` builds for `config` in `workdir`, resuming from its latest checkpoint.

  A config with `pipeline_order` runs its parts in sequence (`run_pipeline`).
  Returns the last logged training metrics (averaged over the last log interval).
  """
  # ------------------------------------------------------------------ setup
  workdir = paths.absolute(workdir)  # orbax needs absolute paths; gs:// stays as it is
  if config.get("pipeline_order", None):
    runs.make_workdir(workdir)
    runs.check_config_against_workdir(config, workdir)
    return run_pipeline(config, workdir, make_task)
  runs.check_trainer_keys(config)
  runs.make_workdir(workdir)
  runs.check_config_against_workdir(config, workdir)
  mesh = sharding.make_mesh(config.mesh.to_dict())
  rules = sharding.rules_from_config(config.get("logical_axis_rules", None))
  task = make_task(config, workdir, mesh)
  task.prepare()
  writer = metric_writers.create_default_writer(
      str(workdir / "tensorboard"), just_logging=jax.process_index() > 0, asynchronous=True)
  logging.info("mesh %s, %d processes, %d devices", dict(mesh.shape), jax.process_count(),
               jax.device_count())
  # Steps are traced under the mesh and logical rules, so activation sharding hints apply.
  with sharding.mesh_context(mesh, rules):
    return _run(config, workdir, mesh, rules, task, writer, make_task)


def _run(config, workdir, mesh, rules, task, writer, make_task) -> dict[str, float]:
  """Resumes from the newest checkpoint that restores (`_run_from`); unreadable newer ones are set aside."""
  failures = []
  while True:
    ckpt = checkpoints.Checkpointer(
        workdir / "checkpoints", max_to_keep=config.get("max_checkpoints", 3),
        save_interval_steps=config.checkpoint_every, async_save=config.get("async_checkpoints", True))
    older = [s for s in sorted(ckpt.all_steps(), reverse=True) if s not in {f.step for f in failures}]
    if failures and not older:
      ckpt.close()
      raise checkpoints.unrestorable_error(ckpt.directory, failures)
    try:
      return _run_from(config, mesh, rules, task, writer, ckpt, older[0] if older else None, failures, make_task)
    except checkpoints.RestoreFailedError as e:
      logging.warning("%s Trying the next older checkpoint.", e)
      failures.append(e)


def _run_from(config, mesh, rules, task, writer, ckpt, resume_step, failures, make_task) -> dict[str, float]:
  """Stages, resume from `resume_step`, compiled steps and the loop (see train_and_evaluate)."""
  plan = stage_plan(config)
  total_steps = plan[-1].end
  first_stage = plan[0]
  if resume_step is not None:
    try:
      first_stage = stage_at(plan, resume_step, ckpt.restore_meta(resume_step).get("stage"))
    except checkpoints.RestoreFailedError:
      ckpt.close()
      raise
  else:
    writer.write_hparams({k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})
  hooks = [periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                           every_steps=config.log_every)]
  preemption = preemption_lib.PreemptionWatcher()
  model, ema, last_metrics = None, None, {}
  averaged = ema_filter(config, task)
  try:
    for stage in plan[first_stage.index:]:
      # ---------------------------------------------------------------- state of this stage
      if model is None:
        model = build_model(config, task, mesh, rules)
        log_overview = True
      else:
        log_overview = False
      graphdef, state, tx, schedule = stage_state(task, model, stage, mesh, stage.start, averaged, ema)
      del model, ema  # their arrays now live in `state` (and get donated to the step)
      if log_overview and jax.process_index() == 0:
        parameter_overview.log_parameter_overview(nnx.to_pure_dict(state["params"]),
                                                  msg=f"trainable parameters ({stage.name})")
      logging.info("stage %s: steps [%d, %d), %d trainable / %d frozen parameters", stage.name,
                   stage.start, stage.end, sum(x.size for x in jax.tree.leaves(state["params"])),
                   sum(x.size for x in jax.tree.leaves(state["frozen"])))
      # Each stage reads its own data stream (its task mix), seeded by the stage index.
      train_iter = task.make_loader("train", seed=config.seed + stage.index,
                                    process_index=jax.process_index(), process_count=jax.process_count())
      if resume_step is not None and stage is first_stage:
        state, meta = ckpt.restore(resume_step, abstract_of(state), train_iter)
        logging.info("resumed from step %d (%s)", resume_step, meta)
        if failures:
          aside = ckpt.set_aside([f.step for f in failures])
          logging.warning("resumed from step %d, the newest readable checkpoint; the unreadable newer "
                          "checkpoint(s) %s were moved to %s for inspection", resume_step,
                          [f.step for f in failures], aside)
      stopped, last_metrics = _train_stage(config, task, stage, graphdef, state, tx, schedule, train_iter,
                                           ckpt, writer, hooks, preemption, mesh, rules, last_metrics, make_task)
      if stopped is None:
        break
      model, ema = stopped
  finally:
    ckpt.close()
    writer.flush()
    preemption.restore_handler()
  return last_metrics


def _train_stage(config, task, stage, graphdef, state, tx, schedule, train_iter, ckpt, writer, hooks,
                 preemption, mesh, rules, last_metrics, make_task):
  """Runs `stage` from the state's step to its end.

  Returns ((the model after the stage, its weight EMA or None), or None if the run stopped
  early; last metrics).
  """
  step = int(jax.device_get(state["step"]))
  if step >= stage.end:
    return (nnx.merge(graphdef, state["params"], state["frozen"]), state.get("ema")), last_metrics

  # ------------------------------------------------------------------ train step
  batch = next(train_iter)
  global_batch = task.global_batch(batch)
  step_fn = train_step_lib.compile_train_step(config, task, stage, graphdef, tx, schedule, state,
                                              global_batch, mesh, rules)
  peak_flops = hardware.peak_flops(mesh.devices.flat[0], config.get("peak_tflops_per_device", None))
  step_flops = _step_flops(config, task, stage, step_fn, mesh, rules, make_task, peak_flops,
                           next(iter(jax.tree.leaves(global_batch))).shape[0])
  unit, per_batch = task.units_per_batch(task.device_batch(batch))
  per_batch *= jax.process_count()

  # ------------------------------------------------------------------ loop
  stop_after = config.get("stop_after_steps", None)  # for tests: simulate a kill
  history: list[dict[str, jax.Array]] = []
  finite = checkpoints.FiniteFlags()  # read only when a checkpoint is due
  t_log = time.time()
  while step < stage.end:
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, metrics = step_fn(state, task.global_batch(batch))
    finite.add(step + 1, metrics.pop("finite"))
    history.append(metrics)
    step += 1
    for hook in hooks:
      hook(step)
    if step % config.log_every == 0 or step == stage.end:
      last_metrics = _mean_metrics(history)
      _check_finite(last_metrics, step, ckpt.latest_step)
      dt = time.time() - t_log
      steps_per_sec = len(history) / max(dt, 1e-9)
      last_metrics[f"{unit}_per_sec"] = per_batch * steps_per_sec
      if step_flops:
        last_metrics["tflops_per_device"] = step_flops * steps_per_sec / 1e12
        if peak_flops:
          last_metrics["mfu"] = step_flops * steps_per_sec / peak_flops
      scalars = {f"train/{k}": v for k, v in last_metrics.items()}
      scalars["train/stage"] = float(stage.index)
      writer.write_scalars(step, scalars)
      history, t_log = [], time.time()
    if config.get("eval_every", 0) and (step % config.eval_every == 0 or step == stage.end):
      eval_metrics = task.evaluate(ema_model(graphdef, state), step, writer)
      if eval_metrics:
        writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_metrics.items()})
    # The SIGTERM check is collective across hosts: on multi-host runs do it at log steps only.
    check = jax.process_count() == 1 or step % config.log_every == 0
    stop = (check and preemption.should_stop()) or (stop_after is not None and step >= stop_after)
    force = stop or step == stage.end
    if force or ckpt.should_save(step):  # never save a non-finite state
      finite.check_before_save(ckpt.latest_step)
    ckpt.save(step, state, train_iter, {"step": step, "stage": stage.name}, force=force)
    if stop:
      logging.warning("stopping at step %d (preemption or stop_after_steps); checkpoint saved", step)
      return None, last_metrics
    if step < stage.end:
      batch = next(train_iter)
  return (nnx.merge(graphdef, state["params"], state["frozen"]), state.get("ema")), last_metrics
