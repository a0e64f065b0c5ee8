"""The BVH file format: the `BvhMotion` data model, parsing and writing.

A BVH file is a joint hierarchy (names, OFFSETs, CHANNELS, End Sites) followed
by one line of channel values per frame. `read_bvh` / `parse_bvh` give a
`BvhMotion` for any rig (any joint names and counts, any channel order,
position channels on any joint); `write_bvh` writes one back. Reading the
rig's pose is `rig.py`; putting it on our skeleton, `retarget.py`.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Union

from etils import epath
import numpy as np

from llamo_jax.core import paths

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
_CHANNEL_CANON = {c.lower(): c for c in POSITION_CHANNELS + ROTATION_CHANNELS}

# Metres per file unit.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}


class BvhParseError(ValueError):
  """A BVH file that does not follow the format."""


# ----------------------------------------------------------------------------
# Data model.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BvhJoint:
  """One joint of a BVH hierarchy.

  Attributes:
    name: joint name as written in the file.
    parent: index of the parent joint in `BvhMotion.joints`, -1 for the root.
    offset: [3] OFFSET in file units.
    channels: channel names in file order, e.g. ("Zrotation", "Xrotation", "Yrotation").
    end_site: [3] offset of the joint's End Site, or None.
  """
  name: str
  parent: int
  offset: np.ndarray
  channels: tuple[str, ...]
  end_site: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class BvhMotion:
  """A BVH file: hierarchy (parents before children) + channel values.

  Attributes:
    joints: the hierarchy in file order.
    frame_time: seconds per frame ("Frame Time").
    values: [T, C] float64 channel values, columns in file order (joint by
      joint, each joint's channels in its CHANNELS order).
  """
  joints: tuple[BvhJoint, ...]
  frame_time: float
  values: np.ndarray

  def __post_init__(self):
    num_channels = sum(len(j.channels) for j in self.joints)
    if self.values.ndim != 2 or self.values.shape[1] != num_channels:
      raise ValueError(f"values must be [T, {num_channels}] for this hierarchy, got "
                       f"{self.values.shape}.")
    if not self.frame_time > 0:
      raise ValueError(f"frame_time must be > 0, got {self.frame_time}.")

  @property
  def names(self) -> list[str]:
    return [j.name for j in self.joints]

  @property
  def parents(self) -> np.ndarray:
    return np.array([j.parent for j in self.joints], np.int64)

  @property
  def num_frames(self) -> int:
    return self.values.shape[0]

  @property
  def fps(self) -> float:
    """1 / Frame Time, snapped to the nearest integer when within 0.01%.

    Files write Frame Time with a few decimals (0.033333, 0.0083333); the snap
    keeps a 60 -> 20 fps resampling an exact every-third-frame pick.
    """
    fps = 1.0 / self.frame_time
    return float(round(fps)) if abs(fps - round(fps)) <= 1e-4 * fps else fps

  def channel_columns(self) -> list[np.ndarray]:
    """Per joint, the indices of its channels' columns in `values`."""
    cols, start = [], 0
    for j in self.joints:
      cols.append(np.arange(start, start + len(j.channels)))
      start += len(j.channels)
    return cols


# ----------------------------------------------------------------------------
# Parsing and writing.
# ----------------------------------------------------------------------------


def read_bvh(path: Union[str, os.PathLike]) -> BvhMotion:
  """Parses the BVH file at `path` (any epath: local or gs://)."""
  path = epath.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"BVH file not found: {path}")
  data = path.read_bytes()
  try:
    text = data.decode("utf-8", errors="strict")
  except UnicodeDecodeError:
    text = data.decode("latin-1")
  return parse_bvh(text, source=str(path))


def parse_bvh(text: str, source: str = "<string>") -> BvhMotion:
  """Parses BVH text into a `BvhMotion`; `source` names the file in errors."""
  lines = text.splitlines()
  pos = 0

  def fail(msg: str, line_no: int | None = None):
    where = f"{source}:{line_no + 1}" if line_no is not None else source
    raise BvhParseError(f"{where}: {msg}")

  def next_line():
    nonlocal pos
    while pos < len(lines) and not lines[pos].strip():
      pos += 1
    if pos >= len(lines):
      fail("unexpected end of file inside the HIERARCHY section.")
    pos += 1
    return pos - 1, lines[pos - 1].strip()

  line_no, line = next_line()
  if line.upper() != "HIERARCHY":
    fail(f"expected 'HIERARCHY' as the first line, got {line[:40]!r}.", line_no)

  joints: list[dict] = []
  # Stack of open blocks: joint index, or "end" for an End Site block.
  stack: list = []
  pending: object = None  # joint index or "end" waiting for its "{"
  seen_root = False
  while True:
    line_no, line = next_line()
    if line.upper().startswith("MOTION"):
      if stack or pending is not None:
        fail("MOTION before the hierarchy's braces are closed.", line_no)
      break
    head, rest = (re.split(r"\s+", line, maxsplit=1) + [""])[:2]
    key = head.upper()
    opens = False
    if rest.rstrip().endswith("{") and key in ("ROOT", "JOINT", "END"):
      opens, rest = True, rest.rstrip()[:-1]
    if key in ("ROOT", "JOINT"):
      name = rest.strip()
      if not name:
        fail(f"{key} without a name.", line_no)
      if key == "ROOT":
        if seen_root:
          fail("more than one ROOT; only single-skeleton files are supported.", line_no)
        seen_root = True
        if stack:
          fail("ROOT inside another joint.", line_no)
        parent = -1
      else:
        if not stack or stack[-1] == "end":
          fail(f"JOINT {name!r} outside a joint block.", line_no)
        parent = stack[-1]
      joints.append({"name": name, "parent": parent, "offset": None, "channels": None,
                     "end_site": None, "line": line_no})
      pending = len(joints) - 1
    elif key == "END":
      if not stack or stack[-1] == "end":
        fail("End Site outside a joint block.", line_no)
      pending = "end"
    elif line == "{":
      if pending is None:
        fail("'{' without a ROOT/JOINT/End Site before it.", line_no)
      stack.append(pending)
      pending = None
    elif line == "}":
      if not stack:
        fail("unmatched '}'.", line_no)
      stack.pop()
    elif key == "OFFSET":
      if not stack:
        fail("OFFSET outside a joint block.", line_no)
      try:
        offset = np.array([float(v) for v in rest.split()], np.float64)
      except ValueError:
        fail(f"OFFSET values are not numbers: {rest!r}.", line_no)
      if offset.shape != (3,):
        fail(f"OFFSET needs 3 numbers, got {rest!r}.", line_no)
      if stack[-1] == "end":
        joints[_last_open_joint(stack)]["end_site"] = offset
      else:
        joints[stack[-1]]["offset"] = offset
    elif key == "CHANNELS":
      if not stack or stack[-1] == "end":
        fail("CHANNELS outside a joint block.", line_no)
      parts = rest.split()
      try:
        count = int(parts[0])
      except (ValueError, IndexError):
        fail(f"CHANNELS needs a count first, got {rest!r}.", line_no)
      names = parts[1:]
      if len(names) != count:
        fail(f"CHANNELS says {count} but lists {len(names)}: {rest!r}.", line_no)
      canon = []
      for c in names:
        if c.lower() not in _CHANNEL_CANON:
          fail(f"unknown channel {c!r} (expected X/Y/Z position/rotation).", line_no)
        canon.append(_CHANNEL_CANON[c.lower()])
      if len(set(canon)) != len(canon):
        fail(f"repeated channel in {rest!r}.", line_no)
      joints[stack[-1]]["channels"] = tuple(canon)
    else:
      fail(f"unexpected line in HIERARCHY: {line[:60]!r}.", line_no)
    if opens:
      stack.append(pending)
      pending = None

  if not joints:
    fail("the hierarchy has no joints.")
  for j in joints:
    if j["offset"] is None:
      fail(f"joint {j['name']!r} has no OFFSET.", j["line"])
    if j["channels"] is None:
      j["channels"] = ()

  # MOTION section: "Frames: N", "Frame Time: dt", then N x C numbers.
  header = {}
  while len(header) < 2:
    line_no, line = next_line()
    label, sep, value = line.partition(":")
    label = label.strip().lower()
    if not sep or label not in ("frames", "frame time"):
      fail(f"expected 'Frames:' and 'Frame Time:' after MOTION, got {line[:40]!r}.", line_no)
    try:
      header[label] = float(value)
    except ValueError:
      fail(f"{label!r} is not a number: {value.strip()!r}.", line_no)
  num_frames = int(header["frames"])
  frame_time = header["frame time"]
  if num_frames != header["frames"] or num_frames < 1:
    fail(f"Frames must be a positive integer, got {header['frames']}.")
  if not frame_time > 0:
    fail(f"Frame Time must be > 0 seconds, got {frame_time}.")
  num_channels = sum(len(j["channels"]) for j in joints)
  try:
    flat = np.array(" ".join(lines[pos:]).split(), np.float64)
  except ValueError as e:
    fail(f"frame data contains a non-number ({e}).")
  expected = num_frames * num_channels
  if flat.size != expected:
    fail(f"frame data has {flat.size} numbers but Frames: {num_frames} x {num_channels} channels "
         f"needs {expected}; the file is truncated or its Frames count is wrong.")
  if not np.all(np.isfinite(flat)):
    fail("frame data contains NaN or inf.")
  return BvhMotion(
      joints=tuple(BvhJoint(name=j["name"], parent=j["parent"], offset=j["offset"],
                            channels=j["channels"], end_site=j["end_site"]) for j in joints),
      frame_time=frame_time, values=flat.reshape(num_frames, num_channels))


def _last_open_joint(stack: list) -> int:
  return next(s for s in reversed(stack) if s != "end")


def format_bvh(motion: BvhMotion, precision: int = 6) -> str:
  """The BVH text of `motion` (tab-indented, `precision` decimals)."""
  children: dict[int, list[int]] = {i: [] for i in range(len(motion.joints))}
  for i, j in enumerate(motion.joints):
    if j.parent >= 0:
      children[j.parent].append(i)
    if j.parent >= i:
      raise ValueError(f"joint {j.name!r} comes before its parent; parents must come first.")
  roots = [i for i, j in enumerate(motion.joints) if j.parent < 0]
  if roots != [0]:
    raise ValueError("a BVH hierarchy needs exactly one root, the first joint.")
  # Channel columns are written joint by joint in hierarchy (depth-first) order,
  # which equals index order only if the joints are stored depth-first.
  order: list[int] = []
  out = ["HIERARCHY"]
  fmt = f"{{:.{precision}f}}"

  def vec(v):
    return " ".join(fmt.format(x) for x in v)

  def emit(i: int, depth: int):
    j = motion.joints[i]
    order.append(i)
    ind = "\t" * depth
    out.append(f"{ind}{'ROOT' if j.parent < 0 else 'JOINT'} {j.name}")
    out.append(f"{ind}{{")
    out.append(f"{ind}\tOFFSET {vec(j.offset)}")
    out.append(f"{ind}\tCHANNELS {len(j.channels)}" + "".join(f" {c}" for c in j.channels))
    for c in children[i]:
      emit(c, depth + 1)
    if j.end_site is not None or not children[i]:
      end = j.end_site if j.end_site is not None else np.zeros(3)
      out.append(f"{ind}\tEnd Site")
      out.append(f"{ind}\t{{")
      out.append(f"{ind}\t\tOFFSET {vec(end)}")
      out.append(f"{ind}\t}}")
    out.append(f"{ind}}}")

  emit(0, 0)
  cols = motion.channel_columns()
  values = motion.values[:, np.concatenate([cols[i] for i in order])]
  out.append("MOTION")
  out.append(f"Frames: {motion.num_frames}")
  out.append(f"Frame Time: {motion.frame_time:.8f}")
  out.extend(vec(row) for row in values)
  return "\n".join(out) + "\n"


def write_bvh(path: Union[str, os.PathLike], motion: BvhMotion, precision: int = 6) -> pathlib.Path | epath.Path:
  """Writes `motion` to `path` (any epath; parent folders created); returns the path."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(format_bvh(motion, precision))
  return paths.as_path(path)
