"""Tiny HumanML3D-layout folders with random data, for the records and pipeline tests."""
from __future__ import annotations

import json
import pathlib

import numpy as np

WORDS = ["walks", "jumps", "waves", "turns", "squats", "kicks", "runs", "claps"]


def caption_line(text: str, start: float = 0.0, end: float = 0.0) -> str:
  tokens = " ".join(f"{w}/VERB" for w in text.split())
  return f"{text}#{tokens}#{start}#{end}"


def write_clip(root: pathlib.Path, clip_id: str, num_frames: int, rng: np.random.Generator, *,
               captions: list[str] | None = None, with272: bool = True) -> np.ndarray:
  """Writes one valid clip (features [T,263], joints [T+1,22,3], text); returns its features."""
  features = rng.normal(size=(num_frames, 263)).astype(np.float32)
  np.save(root / "new_joint_vecs" / f"{clip_id}.npy", features)
  np.save(root / "new_joints" / f"{clip_id}.npy",
          rng.normal(size=(num_frames + 1, 22, 3)).astype(np.float32))
  if with272:
    np.save(root / "vecs272" / f"{clip_id}.npy", rng.normal(size=(num_frames, 272)).astype(np.float32))
  if captions is None:
    captions = [caption_line(f"a person {w}") for w in rng.choice(WORDS, 2, replace=False)]
  (root / "texts" / f"{clip_id}.txt").write_text("\n".join(captions) + "\n")
  (root / "attributes" / f"{clip_id}.json").write_text(json.dumps({"id": clip_id, "frames": num_frames}))
  return features


def make_folder(root: pathlib.Path, *, num_clips: int = 24, min_frames: int = 40,
                max_frames: int = 120, seed: int = 0, splits=(0.75, 0.125, 0.125)) -> dict[str, list[str]]:
  """Writes a valid HumanML3D-layout folder of `num_clips` clips; returns the split IDs."""
  rng = np.random.default_rng(seed)
  for sub in ("new_joint_vecs", "new_joints", "vecs272", "texts", "attributes"):
    (root / sub).mkdir(parents=True, exist_ok=True)
  ids = [f"{i:06d}" for i in range(num_clips)]
  for clip_id in ids:
    write_clip(root, clip_id, int(rng.integers(min_frames, max_frames + 1)), rng)
  np.save(root / "Mean.npy", rng.normal(size=263).astype(np.float32))
  np.save(root / "Std.npy", rng.uniform(0.5, 2.0, size=263).astype(np.float32))
  np.save(root / "Mean272.npy", np.zeros(272, np.float32))
  np.save(root / "Std272.npy", np.ones(272, np.float32))
  n_train, n_val = int(splits[0] * num_clips), int(splits[1] * num_clips)
  split_ids = {"train": ids[:n_train], "val": ids[n_train:n_train + n_val],
               "test": ids[n_train + n_val:]}
  write_splits(root, split_ids)
  return split_ids


def write_splits(root: pathlib.Path, split_ids: dict[str, list[str]]) -> None:
  for split, ids in split_ids.items():
    (root / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
