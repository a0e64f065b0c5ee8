"""Hyperparameter sweeps: a config file's `sweep(add)` expanded into named points.

Each point is one training run in its own workdir, `ROOT/NAME`, where NAME spells the point's
overrides (`lr=0.001,b2=0.95`). The workdir records what the point is (`sweep_point.json`:
config, overrides); `ROOT/sweep.json` records the whole sweep. A point is finished when its
latest checkpoint is at the run's last step (every part's, for a pipeline config), so an
interrupted sweep resumes by running only the points that are not: a partial one resumes
from its checkpoint, as any training run does. Its final metrics are read back from its
TensorBoard logs. Every path goes through epath: ROOT may be gs://.

  def sweep(add):                         # in configs/NAME.py, beside get_config
    for lr in (1e-3, 3e-3):
      add(**{"config.optimizer.lr": lr})  # keys are train flags: config.<dotted field>
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np
from etils import epath

from llamo_jax.core import config_files
from llamo_jax.core import paths
from llamo_jax.training import checkpoints
from llamo_jax.training import runs
from llamo_jax.training.stages import stage_plan

POINT_FILE = "sweep_point.json"
SWEEP_FILE = "sweep.json"
LAUNCHERS = ("local", "tpu", "slurm")
# TensorBoard tags that are progress, not results (clu's ReportProgress, the trainer's throughput).
_PROGRESS = re.compile(r"(steps_per_sec|uptime|per_sec$|tflops|mfu$|/stage$)")


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep: its name (the workdir under the sweep root) and its train-flag overrides."""
  name: str
  overrides: dict[str, Any]


def expand(config_spec: str) -> list[Point]:
  """The points of `configs/NAME.py[:arg]`'s `sweep(add)`, in the order it adds them.

  Every override is checked against the config `get_config(arg)` builds, so a misspelt
  key fails here, before anything runs.
  """
  path, arg = config_files.split_spec(config_spec)
  module = config_files.load_module(path)
  if not callable(getattr(module, "sweep", None)):
    raise ValueError(f"{path} has no sweep(add) function: add one beside get_config, e.g.\n"
                     "  def sweep(add):\n    for lr in (1e-3, 3e-3):\n      add(**{'config.optimizer.lr': lr})")
  added: list[dict[str, Any]] = []
  module.sweep(lambda **overrides: added.append(overrides))
  if not added:
    raise ValueError(f"{path}'s sweep(add) added no points.")
  config = module.get_config(arg)
  for overrides in added:
    check_overrides(config, overrides, path)
  names = _names(added)
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f"{path}'s sweep(add) adds the same point more than once: {dup}.")
  return [Point(name, dict(o)) for name, o in zip(names, added)]


def check_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any], source: str) -> None:
  """Raises, naming the key, when an override is not `config.<existing dotted field>`."""
  for key in overrides:
    prefix, _, field = key.partition(".")
    if prefix != "config" or not field:
      raise ValueError(f"{source}: sweep key {key!r} is not config.<field> (e.g. 'config.optimizer.lr').")
    node = config
    for part in field.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ValueError(f"{source}: sweep key {key!r} names no field of the config ({part!r} not found).")
      node = node[part]


def _names(added: Sequence[dict[str, Any]]) -> list[str]:
  """`key=value,...` per point: the last part of each key, or the whole key where two points'
  keys share a last part; characters that are no good in a path become `_`."""
  keys = {k for o in added for k in o}
  short = {k: k.split(".")[-1] for k in keys}
  clash = {s for s in short.values() if list(short.values()).count(s) > 1}
  short = {k: (k.removeprefix("config.") if s in clash else s) for k, s in short.items()}
  return [re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(f"{short[k]}={flag_value(v)}" for k, v in o.items()))
          or "default" for o in added]


def flag_value(value: Any) -> str:
  """An override as the text of a `--config.x=TEXT` flag that ml_collections parses back to it."""
  if isinstance(value, str):
    return value
  if isinstance(value, float):
    return repr(value)
  return str(value)


def train_flags(config_spec: str, workdir: epath.Path, overrides: dict[str, Any]) -> list[str]:
  """The llamo_jax.train flags of one run."""
  return [f"--config={config_spec}", f"--workdir={workdir}",
          *(f"--{k}={flag_value(v)}" for k, v in overrides.items())]


def launch_command(launcher: str, config_spec: str, workdir: epath.Path, overrides: dict[str, Any], *,
                   name: str = "", launch_flags: Sequence[str] = (), tpu: str = "", zone: str = "",
                   python: str = sys.executable) -> list[str]:
  """The argv that runs one point with `launcher` (local process, launch/tpu_pod.sh, sbatch)."""
  flags = train_flags(config_spec, workdir, overrides)
  if launcher == "local":
    return [python, "-m", "llamo_jax.train", *launch_flags, *flags]
  if launcher == "tpu":
    if not tpu or not zone:
      raise ValueError("--launcher=tpu needs --tpu=NAME and --zone=ZONE (NAME may contain {name} "
                       "for one slice per point).")
    # TPU VM names allow only [a-z0-9-]: `lr=0.003,b2=0.95` -> `lr-0-003-b2-0-95`.
    tpu_name = tpu.format(name=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
    return ["launch/tpu_pod.sh", *launch_flags, tpu_name, zone, config_spec, str(workdir), *flags[2:]]
  if launcher == "slurm":
    # SLURM writes its log to a local (shared) path: the workdir, or the submit dir for gs://.
    log = f"{workdir}/slurm-%j.out" if paths.is_local(workdir) else f"slurm-{name or 'llamo_jax'}-%j.out"
    return ["sbatch", f"--job-name={name or 'llamo_jax'}", f"--output={log}", *launch_flags,
            "launch/slurm_gpu.sbatch", config_spec, str(workdir), *flags[2:]]
  raise ValueError(f"Unknown launcher {launcher!r}; choose one of {LAUNCHERS}.")


# ---------------------------------------------------------------------- the sweep on disk

def record(root: epath.Path, config_spec: str, common: dict[str, Any], points: Sequence[Point]) -> None:
  """Writes ROOT/sweep.json and each point's sweep_point.json; refuses a ROOT that holds another sweep."""
  root = epath.Path(root)
  sweep = {"config": config_spec, "common_overrides": _jsonable(common),
           "points": [{"name": p.name, "overrides": _jsonable(p.overrides)} for p in points]}
  path = root / SWEEP_FILE
  if path.exists():
    previous = json.loads(path.read_text())
    if (previous.get("config"), previous.get("common_overrides")) != (sweep["config"], sweep["common_overrides"]):
      raise ValueError(f"{root} holds a sweep of {previous.get('config')} with overrides "
                       f"{previous.get('common_overrides')}, not {config_spec} with {sweep['common_overrides']}: "
                       "use another --workdir, or the same --config and overrides to resume it.")
    known = {p["name"]: p for p in previous.get("points", [])}
    known.update({p["name"]: p for p in sweep["points"]})
    sweep["points"] = list(known.values())
  root.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(sweep, indent=2))
  for point in points:
    workdir = root / point.name
    workdir.mkdir(parents=True, exist_ok=True)
    entry = {"name": point.name, "config": config_spec,
             "overrides": _jsonable({**common, **point.overrides})}
    point_file = workdir / POINT_FILE
    if point_file.exists() and json.loads(point_file.read_text()) != entry:
      raise ValueError(f"{point_file} records another point than {entry}: use another --workdir.")
    point_file.write_text(json.dumps(entry, indent=2))


def _jsonable(overrides: dict[str, Any]) -> dict[str, Any]:
  return json.loads(json.dumps(overrides, default=str))


@dataclasses.dataclass(frozen=True)
class Status:
  """Where a point's run is: `new` (nothing trained), `partial` or `finished`, at `step` of `total`."""
  state: str
  step: int
  total: int


def status(workdir: str | epath.Path) -> Status:
  """The point's progress, from its config.json and its checkpoints (each part's, for a pipeline)."""
  workdir = epath.Path(workdir)
  if not (workdir / "config.json").exists():
    return Status("new", 0, 0)
  config = runs.load_run_config(workdir)
  if config.get("pipeline_order", None):
    parts = [status(workdir / name) for name in config.pipeline_order]
    step, total = sum(p.step for p in parts), sum(p.total for p in parts)
    done = all(p.state == "finished" for p in parts)
    return Status("finished" if done else ("new" if step == 0 else "partial"), step, total)
  total = stage_plan(config)[-1].end
  steps = checkpoints.saved_steps(workdir / "checkpoints")
  step = steps[-1] if steps else 0
  return Status("finished" if step >= total else ("new" if step == 0 else "partial"), step, total)


def final_metrics(workdir: str | epath.Path) -> dict[str, float]:
  """The last value of every train/ and eval/ scalar in the run's TensorBoard logs (a pipeline's
  parts prefixed `PART/`); progress scalars (steps/s, uptime, throughput) left out."""
  workdir = epath.Path(workdir)
  if (workdir / "config.json").exists():
    config = runs.load_run_config(workdir)
    if config.get("pipeline_order", None):
      return {f"{name}/{k}": v for name in config.pipeline_order
              for k, v in final_metrics(workdir / name).items()}
  return {tag: value for tag, value in _last_scalars(workdir / "tensorboard").items()
          if tag.startswith(("train/", "eval/")) and not _PROGRESS.search(tag)}


def _last_scalars(logdir: epath.Path) -> dict[str, float]:
  """{tag: value at the largest step} over every event file under `logdir`."""
  # pylint: disable-next=g-import-not-at-top  (TensorBoard's reader is only needed to summarize)
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top  (as above)
  if not logdir.exists():
    return {}
  last: dict[str, tuple[int, float]] = {}
  for events in sorted(logdir.glob("events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(
        str(events), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in tags.get("tensors", []):
      for ev in acc.Tensors(tag):
        value = np.asarray(tensor_util.make_ndarray(ev.tensor_proto))
        if value.size == 1 and np.issubdtype(value.dtype, np.number):
          if tag not in last or ev.step >= last[tag][0]:
            last[tag] = (ev.step, float(value))
    for tag in tags.get("scalars", []):
      for ev in acc.Scalars(tag):
        if tag not in last or ev.step >= last[tag][0]:
          last[tag] = (ev.step, float(ev.value))
  return {tag: value for tag, (_, value) in last.items()}


def summarize(root: str | epath.Path) -> list[dict[str, Any]]:
  """One row per point under ROOT (every `*/sweep_point.json`): name, state, step, overrides, metrics."""
  root = epath.Path(root)
  files = sorted(root.glob(f"*/{POINT_FILE}"))
  if not files:
    raise FileNotFoundError(f"No sweep points under {root} (no */{POINT_FILE}): run "
                            f"`python -m llamo_jax.sweep --config=... --workdir={root}` first.")
  rows = []
  for point_file in files:
    point = json.loads(point_file.read_text())
    workdir = point_file.parent
    st = status(workdir)
    rows.append({"name": point["name"], "state": st.state, "step": st.step, "total": st.total,
                 "overrides": point["overrides"], "metrics": final_metrics(workdir)})
  return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
  """The summary as a fixed-width text table: point, state, step, one column per override key
  that varies, one per metric."""
  keys = sorted({k for r in rows for k in r["overrides"]})
  varying = [k for k in keys if len({json.dumps(r["overrides"].get(k)) for r in rows}) > 1] or keys
  metrics = sorted({k for r in rows for k in r["metrics"]})
  header = ["point", "state", "step", *(k.removeprefix("config.") for k in varying), *metrics]
  table = [header]
  for r in rows:
    table.append([r["name"], r["state"], f"{r['step']}/{r['total']}",
                  *(flag_value(r["overrides"][k]) if k in r["overrides"] else "" for k in varying),
                  *(f"{r['metrics'][m]:.4g}" if m in r["metrics"] else "" for m in metrics)])
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)
