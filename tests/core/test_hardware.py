"""Device kinds -> peak FLOP/s and memory; TPU slice names -> topologies; the multislice mesh."""
import importlib.util

import jax
import pytest

from llamo_jax.core import hardware
from llamo_jax.core import sharding

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason='needs libtpu: pip install -e ".[tpu]" (in the test extra)')


@pytest.mark.parametrize("kind, name", [
    ("TPU v4", "v4"), ("TPU v5 lite", "v5e"), ("TPU v5", "v5p"), ("TPU v5p", "v5p"),
    ("TPU v6 lite", "v6e"), ("NVIDIA A100-SXM4-40GB", "A100-40GB"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("NVIDIA H100 PCIe", "H100-PCIe"), ("NVIDIA H200", "H200"),
    ("NVIDIA GH200 480GB", "GH200")])
def test_device_spec_by_kind(kind, name):
  assert hardware.device_spec(kind).name == name


def test_unknown_kind_has_no_peak_and_override_wins():
  cpu = jax.devices()[0]
  assert hardware.device_spec(cpu.device_kind) is None
  assert hardware.peak_flops(cpu) is None          # CPU: the trainer reports no MFU
  assert hardware.peak_flops(cpu, 100.0) == 100e12  # config.peak_tflops_per_device


@pytest.mark.parametrize("name, topology, devices, wrap", [
    ("v5p-64", "v5:2x4x4", 32, (False,) * 3), ("v5p-128", "v5:4x4x4", 64, (True,) * 3),
    ("v5e-256", "v5e:16x16", 256, (True, True, False)), ("v4-8", "v4:2x2x1", 4, (False,) * 3),
    ("v6e-16", "v6e:4x4", 16, (False,) * 3), ("v5e-128", "v5e:8x16", 128, (False, True, False))])
def test_tpu_slice_names(name, topology, devices, wrap):
  spec = hardware.tpu_slice(name)
  assert (spec.topology, spec.num_devices, spec.wrap) == (topology, devices, wrap)


@pytest.mark.parametrize("name, match", [("v5p-63", "sizes"), ("v5e-3", "sizes"), ("tpu-8", "slice name"),
                                         ("v7-8", "slice name")])
def test_bad_tpu_slice_names(name, match):
  with pytest.raises(ValueError, match=match):
    hardware.tpu_slice(name)


@needs_libtpu
def test_multislice_mesh_puts_replica_across_slices():
  devices = hardware.tpu_devices("v5e-4", num_slices=2)
  assert len(devices) == 8 and hardware.num_slices_of(devices) == 2
  mesh = sharding.make_mesh({"replica": 1, "fsdp": -1}, devices)
  assert dict(mesh.shape) == {"replica": 2, "data": 1, "fsdp": 4, "tensor": 1}
  for r in range(2):  # each replica is one slice: fsdp stays on ICI
    assert {d.slice_index for d in mesh.devices[r].flat} == {r}
  with pytest.raises(ValueError, match="must be 2"):
    sharding.make_mesh({"replica": 4, "fsdp": -1}, hardware.tpu_devices("v5e-8", num_slices=2))


def test_missing_libtpu_names_the_extra(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
  with pytest.raises(ImportError, match=r'pip install -e "\.\[tpu\]"'):
    hardware.tpu_devices("v5p-64")
