"""Stages of a run: consecutive step ranges, each with its own optimizer settings and task settings."""
from __future__ import annotations

import dataclasses

import ml_collections

from llamo_jax.training import checkpoints


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run: global steps [start, end), its optimizer config and task settings."""
  index: int
  name: str
  start: int
  end: int
  optimizer: ml_collections.ConfigDict
  settings: ml_collections.ConfigDict
  # Decay of the exponential moving average of the weights this stage trains (0: the average is the
  # weights themselves); see llamo_jax/training/state.py, "Weight EMA".
  ema_decay: float = 0.0


def stage_plan(config: ml_collections.ConfigDict) -> list[Stage]:
  """The run's stages in order.

  A staged config lists `stage_order` (names) and `stages.NAME` with `steps`, an optional
  `optimizer` (fields overriding `config.optimizer`) and any task settings (e.g. the data
  mix). Without `stage_order` the run is one stage "main" of `total_steps`.
  """
  if not config.get("stage_order", None):
    return [Stage(0, "main", 0, int(config.total_steps), config.optimizer, ml_collections.ConfigDict(),
                  _ema_decay(config.get("ema_decay", 0.0), "config.ema_decay"))]
  unknown = set(config.stages.keys()) - set(config.stage_order)
  if unknown:
    raise ValueError(f"config.stages has {sorted(unknown)} which config.stage_order={tuple(config.stage_order)} "
                     "does not list; add them to stage_order or remove them.")
  plan, start = [], 0
  for i, name in enumerate(config.stage_order):
    if name not in config.stages:
      raise ValueError(f"config.stage_order names {name!r} but config.stages has no such entry.")
    settings = config.stages[name]
    steps = int(settings.get("steps", 0))
    if steps <= 0:
      raise ValueError(f"config.stages.{name}.steps must be positive, got {steps}.")
    optimizer = config.optimizer.copy_and_resolve_references()
    with optimizer.unlocked():
      optimizer.update(settings.get("optimizer", ml_collections.ConfigDict()))
    decay = _ema_decay(settings.get("ema_decay", config.get("ema_decay", 0.0)),
                       f"config.stages.{name}.ema_decay" if "ema_decay" in settings else "config.ema_decay")
    plan.append(Stage(i, name, start, start + steps, optimizer, settings, decay))
    start += steps
  return plan


def _ema_decay(value, key: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ValueError(f"{key}={value!r} is out of range: the weight EMA's decay must be in [0, 1) "
                     f"(0 turns it off; e.g. --{key}=0.995 averages over about 200 steps).")
  return float(value)


def stage_at(plan: list[Stage], step: int, saved_stage: str | None = None) -> Stage:
  """The stage whose state a checkpoint at `step` holds (its meta names it; else the step decides)."""
  if saved_stage is not None:
    for stage in plan:
      if stage.name == saved_stage:
        return stage
    raise checkpoints.IncompatibleCheckpointError(
        f"The checkpoint at step {step} is from stage {saved_stage!r}, which this config's stages "
        f"{[s.name for s in plan]} do not have. Resume with the config that wrote it.")
  for stage in plan:
    if step <= stage.end:
      return stage
  return plan[-1]
