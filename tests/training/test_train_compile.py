"""Ahead-of-time compile of the trainer's step (training/aot.py, python -m llamo_jax.train_compile)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from helpers import REPO, load_config
from llamo_jax import tasks
from llamo_jax.core import hardware
from llamo_jax.core import sharding
from llamo_jax.training import aot
from llamo_jax.training import train_step
from llamo_jax.training import trainer

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason='needs libtpu: pip install -e ".[tpu]" (in the test extra)')


def tiny_lm(**mesh):
  config = load_config("lm", "tiny")
  config.model.vocab_size = 256
  config.data.seq_len = 32
  config.data.batch_size = 8
  config.mesh = mesh or {"data": 2, "fsdp": 4, "tensor": 1}
  return config


def expected_param_bytes_per_device(config, fsdp: int) -> int:
  """From the config alone: the tiny Llama's params, every one with an `embed` dim split over
  fsdp (norm scales too; `vocab`, `heads` go to tensor = 1), float32."""
  m = config.model
  per_layer = (2 * m.dim // fsdp                             # attn_norm, mlp_norm [D]
               + m.dim * (m.n_heads + 2 * m.n_kv_heads) * m.head_dim // fsdp  # q, k, v [D, N|K, H]
               + m.n_heads * m.head_dim * m.dim // fsdp      # o [N, H, D]
               + 3 * m.dim * m.ffn_dim // fsdp)              # gate, up [D, F], down [F, D]
  params = (m.n_layers * per_layer + m.vocab_size * m.dim // fsdp + m.dim // fsdp  # final_norm
            + (0 if m.tie_embeddings else m.dim * m.vocab_size // fsdp))
  return 4 * params


def test_report_matches_the_config_on_8_cpus():
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
  config = tiny_lm()
  report = aot.compile_report(config, tasks.get_task, jax.devices(), topology="local",
                              capacity_bytes=1 << 30, search_batch=False)
  m = config.model
  assert report["mesh"] == {"replica": 1, "data": 2, "fsdp": 4, "tensor": 1}
  assert report["batch_per_device"] == 1 and report["batch_shapes"]["tokens"] == [8, 32]
  param_bytes = expected_param_bytes_per_device(config, fsdp=4)
  assert report["param_count"] * 4 > param_bytes * 3  # most of it is sharded 4 ways
  assert report["state_bytes_per_device"]["params"] == param_bytes
  # AdamW: mu and nu like the params (+ scalar counters).
  assert 2 * param_bytes <= report["state_bytes_per_device"]["opt_state"] < 2 * param_bytes + 64
  hbm = report["hbm_bytes_per_device"]
  batch_bytes = 3 * 4 * 32  # tokens, segment_ids, positions: one int32 row per device
  state_bytes = sum(report["state_bytes_per_device"].values()) + 4  # + step
  assert hbm["arguments"] == state_bytes + batch_bytes
  assert hbm["aliased"] >= state_bytes - 64  # the state is donated
  assert report["fits"] is True and hbm["total"] < hbm["capacity"] == 1 << 30
  # FLOPs: forward + backward ~ 6 x params x tokens for the matmuls (plus attention and the
  # optimizer); cost analysis is per device, so x 8 devices.
  tokens = 8 * 32
  dense = 6 * report["param_count"] * tokens
  assert 0.8 * dense < report["flops_per_step"] < 2.0 * dense
  assert report["flops_per_step"] == pytest.approx(8 * report["flops_per_device"])
  assert report["flops_lower_bound"] is False  # no loop left in the unscanned compiles
  assert report["peak_flops_per_device"] is None and report["step_seconds_at_50pct_mfu"] is None


def test_trainer_logs_the_flops_of_every_scanned_layer():
  """The trainer's MFU counts a scanned step's every layer (train_step.step_flops), only where an MFU is logged."""
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
  config = tiny_lm()
  config.model.n_layers = 3
  unscanned = tiny_lm()
  unscanned.model.n_layers = 3
  unscanned.model.scan_layers = False
  got = {}
  for name, cfg in (("scanned", config), ("unscanned", unscanned)):
    mesh, rules = _mesh_and_rules(cfg)
    with sharding.mesh_context(mesh, rules):
      compiler = aot._Compiler(cfg, tasks.get_task, mesh, rules, None)
      compiled, _ = compiler.compile(8)
      got[name] = [trainer._step_flops(cfg, compiler.task, compiler.stage, compiled, mesh, rules, tasks.get_task,
                                       peak, 8) for peak in (1e12, None)]
      got[name + "_xla"] = train_step.compiled_flops(compiled)
  assert got["unscanned"] == [got["unscanned_xla"]] * 2  # XLA's count is complete: no extra compile
  np.testing.assert_allclose(got["scanned"][0], got["unscanned_xla"], rtol=1e-2)
  assert got["scanned"][1] == 0.0  # no peak (CPU): nothing logged rather than a count missing 2 layers
  assert got["scanned_xla"] < 0.8 * got["unscanned_xla"]


def test_compiled_loops_counts_while_loops_xla_counts_once():
  def repeat(x, n):  # a traced trip count: XLA keeps the loop
    return jax.lax.fori_loop(0, n, lambda _, y: jax.numpy.tanh(y @ y), x)

  x = jax.numpy.ones((8, 8))
  looped = jax.jit(repeat).lower(x, 4).compile()
  once = jax.jit(lambda x: jax.numpy.tanh(x @ x)).lower(x).compile()
  assert train_step.compiled_loops(looped) >= 1 and train_step.compiled_loops(once) == 0
  # What step_flops guards against: the loop's FLOPs are counted once, whatever the trip count.
  assert train_step.compiled_flops(looped) <= 2 * train_step.compiled_flops(once)


def _mesh_and_rules(config):
  return (sharding.make_mesh(config.mesh.to_dict()),
          sharding.rules_from_config(config.get("logical_axis_rules", None)))


@pytest.mark.slow  # up to 7 compiles
def test_batch_search_finds_the_largest_fitting_batch():
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
  config = tiny_lm()
  probe = aot.compile_report(config, tasks.get_task, jax.devices(), topology="local",
                             capacity_bytes=1 << 30, search_batch=False, flops=False)
  total1 = probe["hbm_bytes_per_device"]["total"]
  # A capacity a little above the 1-row step: 1 fits, 8 does not.
  report = aot.compile_report(config, tasks.get_task, jax.devices(), topology="local",
                              capacity_bytes=int(total1 * 1.5), search_batch=True, flops=False,
                              max_compiles=6)
  best = report["max_batch_per_device"]
  fits = {int(k): v for k, v in report["batch_search"]["fits"].items()}
  assert best >= 1 and fits[best] <= int(total1 * 1.5)
  assert all(b > best for b in report["batch_search"]["does_not_fit"])


@needs_libtpu
def test_tpu_topology_compile_and_multislice():
  """A tiny LM on a 4-chip v5e slice, and on two of them (replica across slices)."""
  config = tiny_lm(replica=1, fsdp=-1)
  one = aot.compile_report(config, tasks.get_task, hardware.tpu_devices("v5e-4"), topology="v5e-4",
                           search_batch=False)
  assert one["device_kind"].startswith("TPU v5") and one["num_devices"] == 4
  # libtpu takes step_flops' compiler options (train_step.TPU_FLOP_COUNT_OPTIONS): no loops left.
  assert one["flops_per_device"] > 0 and one["flops_lower_bound"] is False
  assert one["mesh"] == {"replica": 1, "data": 1, "fsdp": 4, "tensor": 1}
  assert one["state_bytes_per_device"]["params"] == expected_param_bytes_per_device(config, fsdp=4)
  assert one["hbm_bytes_per_device"]["capacity"] == 16 * hardware.GiB and one["fits"] is True
  two = aot.compile_report(config, tasks.get_task, hardware.tpu_devices("v5e-4", 2), topology="v5e-4",
                           search_batch=False, flops=False)
  assert two["num_slices"] == 2 and two["mesh"] == {"replica": 2, "data": 1, "fsdp": 4, "tensor": 1}
  # Same per-device state (fsdp within a slice), half the batch rows per device.
  assert two["state_bytes_per_device"] == one["state_bytes_per_device"]
  assert two["batch_per_device"] * 2 == one["batch_per_device"]


@pytest.mark.slow  # a process start + 3 compiles; the default run covers the library
@needs_libtpu
def test_cli_fails_with_the_figures_when_the_step_does_not_fit(tmp_path):
  out = tmp_path / "report.json"
  proc = subprocess.run(
      [sys.executable, "-m", "llamo_jax.train_compile", "--config=configs/lm.py:tiny",
       "--config.model.vocab_size=256", "--config.data.seq_len=32", "--config.data.batch_size=8",
       "--config.mesh.data=1", "--config.mesh.fsdp=-1", "--topology=v5e-4", "--num_slices=2",
       "--hbm_gib=0.0001", "--search_batch=false", f"--out={out}"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "does not fit v5e-4" in proc.stderr and "config.mesh.fsdp" in proc.stderr
  report = json.loads(out.read_text())
  assert report["fits"] is False and report["num_devices"] == 8
  assert set(report["hbm_bytes_per_device"]) >= {"arguments", "outputs", "temporaries", "total", "capacity"}
  assert math.isclose(report["hbm_bytes_per_device"]["capacity"], 0.0001 * hardware.GiB, rel_tol=1e-3)
