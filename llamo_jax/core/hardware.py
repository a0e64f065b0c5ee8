"""Accelerator facts: peak FLOP/s and memory per device kind, and TPU slices by name.

`device_spec(kind)` looks a `jax.Device.device_kind` up in DEVICE_SPECS (dense bf16
peak, memory per device): the trainer's MFU and train_compile's fit check use it; a
kind it does not know (CPU) has no peak, and then no MFU is reported.

`tpu_slice(name)` turns a TPU slice name as Cloud TPU spells it (v4-32, v5p-64,
v5e-256, v6e-16: the number is TensorCores for v4/v5p, chips for v5e/v6e) into the
topology libtpu compiles for; `tpu_devices(name, num_slices)` returns compile-only
devices of that topology (no TPU needed, but `libtpu`: `pip install -e ".[tpu]"`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re

import jax

GiB = 1024 ** 3
TPU_EXTRA_HINT = 'pip install -e ".[tpu]"'


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
  """One device (what jax calls a device: a TPU chip, megacore included, or a GPU)."""
  name: str
  peak_flops: float    # dense bf16 FLOP/s (vendor spec sheets)
  memory_bytes: int    # HBM per device


# (device_kind pattern, spec); the first pattern that matches the kind wins, so the
# more specific names come first. Peak: dense bf16 without sparsity.
DEVICE_SPECS: tuple[tuple[str, DeviceSpec], ...] = (
    (r"^TPU v4", DeviceSpec("v4", 275e12, 32 * GiB)),
    (r"^TPU v5 ?lite|^TPU v5e", DeviceSpec("v5e", 197e12, 16 * GiB)),
    (r"^TPU v5p?$|^TPU v5p", DeviceSpec("v5p", 459e12, 95 * GiB)),
    (r"^TPU v6 ?lite|^TPU v6e", DeviceSpec("v6e", 918e12, 32 * GiB)),
    (r"A100.*80GB", DeviceSpec("A100-80GB", 312e12, 80 * GiB)),
    (r"A100", DeviceSpec("A100-40GB", 312e12, 40 * GiB)),
    (r"H100.*PCIe", DeviceSpec("H100-PCIe", 756e12, 80 * GiB)),
    (r"H100", DeviceSpec("H100-SXM", 989e12, 80 * GiB)),
    (r"GH200", DeviceSpec("GH200", 989e12, 96 * GiB)),
    (r"H200", DeviceSpec("H200", 989e12, 141 * GiB)),
    (r"B200", DeviceSpec("B200", 2250e12, 180 * GiB)),
    (r"\bL4\b", DeviceSpec("L4", 121e12, 24 * GiB)),
)


def device_spec(device_kind: str) -> DeviceSpec | None:
  """The spec of a `jax.Device.device_kind`, or None for a kind not in DEVICE_SPECS (e.g. CPU)."""
  for pattern, spec in DEVICE_SPECS:
    if re.search(pattern, device_kind):
      return spec
  return None


def peak_flops(device: jax.Device, override_tflops: float | None = None) -> float | None:
  """Peak FLOP/s of `device` for MFU: `override_tflops` (>0) if given, else its kind's spec
  (None when the kind is unknown: then MFU is not reported)."""
  if override_tflops:
    return float(override_tflops) * 1e12
  spec = device_spec(device.device_kind)
  return spec.peak_flops if spec else None


# ------------------------------------------------------------------ TPU slices

@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """A TPU slice topology as libtpu's compile-only client takes it."""
  name: str                 # e.g. v5p-64
  topology: str             # libtpu's name, e.g. v5:2x4x4
  chip_config: str          # megacore (v4, v5p: one device per chip) | default
  wrap: tuple[bool, bool, bool]
  num_devices: int

# Chip grids of the slice sizes Cloud TPU offers (chips -> grid).
_GRID_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
            256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)}
_GRID_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
            256: (16, 16)}
# generation -> (libtpu chip name, counts cores (2 per chip)?, 3D torus?)
_GENERATIONS = {"v4": ("v4", True, True), "v5p": ("v5", True, True),
                "v5e": ("v5e", False, False), "v5litepod": ("v5e", False, False),
                "v6e": ("v6e", False, False)}


def tpu_slice(name: str) -> TpuSlice:
  """The topology of a Cloud TPU slice name (module docstring); ValueError naming the
  known generations and sizes for anything else."""
  m = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name.strip().lower())
  known = ", ".join(f"{g}-N" for g in _GENERATIONS)
  if not m:
    raise ValueError(f"--topology={name!r} is not a TPU slice name; use one of {known} "
                     "(e.g. v5p-64, v5e-256), or 'local' for this machine's devices.")
  gen, count = m.group(1), int(m.group(2))
  chip, per_core, torus3d = _GENERATIONS[gen]
  chips = count // 2 if per_core else count
  grids = _GRID_3D if torus3d else _GRID_2D
  if (per_core and count % 2) or chips not in grids:
    sizes = sorted(c * 2 if per_core else c for c in grids)
    raise ValueError(f"--topology={name!r}: {gen} slices come in sizes {sizes}.")
  grid = grids[chips]
  # Wrap-around links (a torus) as Cloud TPU builds slices: v4/v5p from 64 chips (4x4x4
  # cubes) on every axis, v5e/v6e on an axis of 16 chips.
  if torus3d:
    wrap = (chips >= 64,) * 3
  else:
    wrap = tuple(d == 16 for d in grid) + (False,)
  return TpuSlice(name=f"{gen}-{count}", topology=f"{chip}:{'x'.join(map(str, grid))}",
                  chip_config="megacore" if per_core else "default", wrap=wrap,
                  num_devices=chips)


def tpu_devices(name: str, num_slices: int = 1) -> list[jax.Device]:
  """Compile-only devices of `num_slices` slices of `name` (each device has a slice_index
  when num_slices > 1). Needs libtpu, not a TPU."""
  spec = tpu_slice(name)
  if importlib.util.find_spec("libtpu") is None:
    raise ImportError(f"Compiling for --topology={name} needs libtpu (the TPU compiler); install "
                      f"the tpu extra: {TPU_EXTRA_HINT}")
  # The compile-only client opens no chips, so several compiles (or a compile beside a
  # training run) may load libtpu at once: skip its one-process lockfile.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top  (after the libtpu check)
  desc = topologies.get_topology_desc(
      spec.topology, "tpu", chip_config_name=spec.chip_config, chips_per_host_bounds=(2, 2, 1),
      num_slices=num_slices, wrap=spec.wrap)
  devices = list(desc.devices)
  if len(devices) != spec.num_devices * num_slices:
    raise RuntimeError(f"libtpu made {len(devices)} devices for {num_slices} x {name}, expected "
                       f"{spec.num_devices * num_slices}; is libtpu the version setup.py pins?")
  return devices


def num_slices_of(devices: list[jax.Device]) -> int:
  """How many slices (ICI islands joined over DCN) `devices` span: distinct slice_index, else 1."""
  return len({getattr(d, "slice_index", 0) or 0 for d in devices}) or 1
