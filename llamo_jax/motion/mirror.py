"""Left/right mirroring of a clip: its joints, its features and the words that describe it.

The mirror image of a motion swaps every left joint with its right twin and negates the
lateral axis (x; Y is up and the first frame faces +Z), as HumanML3D builds its `M`
clips. Features are recomputed from the mirrored joints, so they are exact in any
representation; captions and attribute records swap "left" and "right" (and the turning
senses that go with them). Mirroring twice is the identity.
"""
from __future__ import annotations

import json
import re

import numpy as np

from llamo_jax.motion import representation as representation_lib
from llamo_jax.motion import skeleton

# Joint index -> its mirror twin (itself on the spine), from the names.
MIRROR_JOINTS = tuple(
    skeleton.JOINT_NAMES.index(name.replace("left_", "right_") if name.startswith("left_")
                               else name.replace("right_", "left_")) for name in skeleton.JOINT_NAMES)
# Words that name a side or a sense of rotation, and their mirror word.
_SWAP = {"left": "right", "right": "left", "clockwise": "counterclockwise",
         "counterclockwise": "clockwise", "counter-clockwise": "clockwise",
         "anticlockwise": "clockwise", "anti-clockwise": "clockwise"}
_WORDS = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SWAP), key=len, reverse=True)) + r")\b",
                    re.IGNORECASE)


def mirror_joints(joints: np.ndarray) -> np.ndarray:
  """Joint positions [..., 22, 3] -> their mirror image (left and right swapped, x negated)."""
  joints = np.asarray(joints)
  if joints.shape[-2:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f"mirror_joints needs joints [..., {skeleton.NUM_JOINTS}, 3], got {joints.shape}.")
  out = joints[..., MIRROR_JOINTS, :].copy()
  out[..., 0] *= -1
  return out


def mirror_features(joints: np.ndarray, representation: str) -> np.ndarray:
  """Features of the mirrored clip, computed from its joints [T, 22, 3] (as the corpus computes them)."""
  return np.asarray(representation_lib.get_representation(representation).from_joints(mirror_joints(joints)),
                    np.float32)


def mirror_text(text: str) -> str:
  """A description of the mirrored clip: left <-> right, clockwise <-> counterclockwise (case kept)."""
  def swap(match: re.Match) -> str:
    word = match.group(0)
    out = _SWAP[word.lower()]
    return out.capitalize() if word[0].isupper() else out
  return _WORDS.sub(swap, text)


def mirror_attributes(attributes: str) -> str:
  """An attributes JSON string of the mirrored clip: every string value goes through mirror_text."""
  def walk(value):
    if isinstance(value, str):
      return mirror_text(value)
    if isinstance(value, list):
      return [walk(v) for v in value]
    if isinstance(value, dict):
      return {k: walk(v) for k, v in value.items()}
    return value
  try:
    parsed = json.loads(attributes) if attributes else {}
  except json.JSONDecodeError:
    return mirror_text(attributes)
  return json.dumps(walk(parsed), sort_keys=True)
