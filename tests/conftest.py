"""Test-wide setup: 8 fake CPU devices, so sharding tests run on a real mesh."""
import os

# Must happen before jax is imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import pytest

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE_CLIP = SHARED / "fixtures" / "humanml3d_012314"


@pytest.fixture
def humanml3d_clip() -> pathlib.Path:
  """The released HumanML3D clip 012314 in ../shared/fixtures (skips when absent)."""
  if not FIXTURE_CLIP.is_dir():
    pytest.skip(f"released HumanML3D clip not found at {FIXTURE_CLIP}; "
                "it lives in the shared/ folder beside the repo checkout")
  return FIXTURE_CLIP
