"""Helpers shared by tests: load repo configs, override fields, read TensorBoard scalars."""
import pathlib

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from llamo_jax.core.config_files import sibling_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
  """`configs/NAME.py`'s get_config(arg)."""
  return sibling_config(str(REPO / "configs" / "_.py"), name, arg)


def override(config, **overrides):
  """Sets dotted fields, e.g. override(cfg, **{"optimizer.lr": 1e-3}); returns config."""
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config


def _accumulators(workdir: pathlib.Path):
  for events in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
    acc = event_accumulator.EventAccumulator(str(events), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    yield acc


def scalars(workdir: pathlib.Path, tag: str) -> dict[int, float]:
  """{step: value} of a scalar written by the trainer's clu writer."""
  out = {}
  for acc in _accumulators(workdir):
    if tag in acc.Tags()["tensors"]:
      for ev in acc.Tensors(tag):
        out[ev.step] = float(np.asarray(tensor_util.make_ndarray(ev.tensor_proto)))
  return out


def tags(workdir: pathlib.Path) -> set[str]:
  """Every tag written to the workdir's TensorBoard logs."""
  return {t for acc in _accumulators(workdir) for kind in ("tensors", "images") for t in acc.Tags().get(kind, [])}


# Runs a program with jax (and the libraries built on it) unimportable: `import jax` raises ImportError.
_NO_JAX = ("import runpy, sys\n"
           "for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax'): sys.modules[name] = None\n"
           "module = sys.argv[1]\n"
           "sys.argv = [module] + sys.argv[2:]\n"
           "runpy.run_module(module, run_name='__main__')\n")


def run_without_jax(module: str, *args: str, cwd: pathlib.Path):
  """`python -m module args` in a subprocess where jax/flax cannot be imported (CompletedProcess)."""
  import subprocess  # pylint: disable=g-import-not-at-top  (only the tests that spawn need it)
  import sys  # pylint: disable=g-import-not-at-top  (only the tests that spawn need it)
  return subprocess.run([sys.executable, "-c", _NO_JAX, module, *args], capture_output=True, text=True,
                        timeout=600, cwd=cwd, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
