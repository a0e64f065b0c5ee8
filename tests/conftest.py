"""Test-wide setup: 8 fake CPU devices, so sharding tests run on a real mesh."""
import os

# Must happen before jax is imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import numpy as np
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


CAPTIONS = ["a person walks forward", "someone jumps in place", "the man waves his right hand",
            "a person turns left", "a woman squats down slowly", "someone kicks with the left leg",
            "a person runs in a circle", "the figure claps twice"]


@pytest.fixture(scope="session")
def caption_corpus_dir(tmp_path_factory) -> pathlib.Path:
  """A small HumanML3D-layout folder with captions only (train/val splits)."""
  root = tmp_path_factory.mktemp("corpus")
  (root / "texts").mkdir()
  rng = np.random.default_rng(0)
  ids = [f"{i:06d}" for i in range(40)]
  for clip_id in ids:
    lines = [f"{CAPTIONS[j]}#x/NOUN#0.0#0.0" for j in rng.choice(len(CAPTIONS), 3, replace=False)]
    (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines))
  (root / "train.txt").write_text("\n".join(ids[:32]))
  (root / "val.txt").write_text("\n".join(ids[32:]))
  (root / "corpus.json").write_text("{}")
  return root


