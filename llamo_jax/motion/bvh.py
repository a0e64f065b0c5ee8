"""BVH motion files: parse, write, forward kinematics, and the mapping onto our 22 joints.

A BVH file is a joint hierarchy (names, OFFSETs, CHANNELS, End Sites) followed
by one line of channel values per frame. `read_bvh` / `parse_bvh` give a
`BvhMotion` for any rig (any joint names and counts, any channel order,
position channels on any joint); `write_bvh` writes one back.

Forward kinematics (`global_transforms`) follows the usual BVH reading:

  R_j = R_parent(j) @ E_j,     p_j = p_parent(j) + R_parent(j) @ t_j,

where E_j multiplies the joint's rotation channels in the order they are
listed (`Zrotation Xrotation Yrotation` gives Rz @ Rx @ Ry, i.e. intrinsic
Euler "ZXY"), angles in degrees, and t_j is the OFFSET, except that the
components a joint has position channels for (Xposition ...) are replaced by
the channel values. That is how MotionBuilder/Blender read 6-channel joints,
and the root's OFFSET is zero in nearly every file.

Import onto our skeleton (`to_joints`): global joint positions of the rig ->
metres (`unit`) -> Y-up (`up`) -> our 22 joints by name (`map_to_skeleton`)
-> resampled to `fps` by linear interpolation of positions in time.

Name mapping. A rig joint name is normalised (namespace before the last ':'
or '|' dropped, e.g. "mixamorig:", lowercased, non-alphanumerics removed) and
looked up in alias tables for common conventions: llamo/SMPL ("pelvis",
"left_hip", "L_Hip" ...), CMU/Mixamo/MotionBuilder-HumanIK ("Hips",
"LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "LeftShoulder" (collar),
"LeftArm" ...), Unreal ("thigh_l", "calf_l", "ball_l" ...) and 3ds Max Biped
("Bip01 L Thigh" ...). An exact normalised match wins over a suffix match
(which makes "Bip01 L Thigh", "CC_Base_L_Thigh", "mixamorig_LeftUpLeg" work).
The table that maps the most joints is used, the others fill its gaps; a rig
joint is used for one of our joints at most. A user mapping
{our joint name: rig joint name} takes precedence over all tables. When a rig
has no toe joint, the End Site of the ankle stands in for the toe (L_foot /
R_foot). Joints that cannot be mapped raise `BvhMappingError` naming them and
listing the rig's joint names.

Spine rule (our joints spine1, spine2, spine3 = indices 3, 6, 9). Rigs have
anything from one to ten joints between the hips and the neck and name them
inconsistently ("Spine1" is SMPL's lowest spine joint but Mixamo's middle one),
so spine joints are never taken from alias tables. Instead, with `chain` the
rig joints strictly between the mapped pelvis and neck:
  * spine3 is the chain joint where the collars (or, without collar joints,
    the shoulders) branch off; if they branch elsewhere, the whole chain is
    used and spine3 is interpolated like spine1/spine2 below.
  * with `lower` the chain up to and including spine3: if it has exactly three
    joints (SMPL, CMU, Mixamo, our own export), they are spine1, spine2,
    spine3; otherwise spine1 and spine2 are points on the polyline
    pelvis -> lower... at the arc-length fractions the target skeleton has
    (|o3| : |o6| : |o9| of TARGET_OFFSETS), computed per frame.
Spine joints given in a user mapping are used as given.

Zero-length bones (a joint on its parent's point, like CMU's LowerBack, Neck
and LeftShoulder) would leave bone directions undefined for inverse
kinematics, so: (1) a mapped joint sitting on its rig parent moves to its only
child when that child is unused (CMU: neck = Neck1); (2) such joints are left
out of the spine chain; (3) one of our joints still on our parent's point
(CMU: collar on spine3) becomes the point at |o_j| / (|o_j| + |o_child|) of the
rig path from our parent to our child (Spine1 -> LeftShoulder -> LeftArm);
(4) anything left raises `BvhMappingError`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
from scipy.spatial.transform import Rotation

from llamo_jax.motion import skeleton

_POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
_ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
_CHANNEL_CANON = {c.lower(): c for c in _POSITION_CHANNELS + _ROTATION_CHANNELS}

# Metres per file unit.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}

# Our joint indices (DESIGN.md order).
PELVIS, L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = range(10)
L_FOOT, R_FOOT, NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER = range(10, 18)
L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = range(18, 22)
NUM_JOINTS = 22
SPINE_JOINTS = (SPINE1, SPINE2, SPINE3)


class BvhParseError(ValueError):
  """A BVH file that does not follow the format."""


class BvhMappingError(ValueError):
  """A BVH rig whose joints cannot be mapped onto our 22 joints."""


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


def read_bvh(path: Union[str, pathlib.Path]) -> BvhMotion:
  """Parses the BVH file at `path`."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"BVH file not found: {path}")
  try:
    text = path.read_text(encoding="utf-8", errors="strict")
  except UnicodeDecodeError:
    text = path.read_text(encoding="latin-1")
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


def write_bvh(path: Union[str, pathlib.Path], motion: BvhMotion, precision: int = 6) -> pathlib.Path:
  """Writes `motion` to `path` (parent folders created); returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(format_bvh(motion, precision))
  return path


# ----------------------------------------------------------------------------
# Forward kinematics of a BVH rig.
# ----------------------------------------------------------------------------


def local_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Per-joint local rotations [T, J, 3, 3] and translations [T, J, 3] (file units)."""
  num_frames, num_joints = motion.num_frames, len(motion.joints)
  rot = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
  trans = np.empty((num_frames, num_joints, 3))
  for i, (j, cols) in enumerate(zip(motion.joints, motion.channel_columns())):
    trans[:, i] = j.offset
    axes, angle_cols = [], []
    for c, col in zip(j.channels, cols):
      if c in _POSITION_CHANNELS:
        trans[:, i, _POSITION_CHANNELS.index(c)] = motion.values[:, col]
      else:
        axes.append(c[0])
        angle_cols.append(col)
    if axes:
      # Upper-case sequence = intrinsic rotations = Rz @ Rx @ Ry for "ZXY".
      rot[:, i] = Rotation.from_euler("".join(axes), motion.values[:, angle_cols],
                                      degrees=True).as_matrix()
  return rot, trans


def global_transforms(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
  """Global joint rotations [T, J, 3, 3] and positions [T, J, 3] (file units)."""
  local_rot, local_trans = local_transforms(motion)
  glob_rot = np.empty_like(local_rot)
  glob_pos = np.empty_like(local_trans)
  for i, j in enumerate(motion.joints):
    if j.parent < 0:
      glob_rot[:, i] = local_rot[:, i]
      glob_pos[:, i] = local_trans[:, i]
    else:
      p = j.parent
      glob_rot[:, i] = glob_rot[:, p] @ local_rot[:, i]
      glob_pos[:, i] = glob_pos[:, p] + np.einsum("tij,tj->ti", glob_rot[:, p], local_trans[:, i])
  return glob_rot, glob_pos


def global_positions(motion: BvhMotion) -> np.ndarray:
  """Global joint positions [T, J, 3] in file units."""
  return global_transforms(motion)[1]


def end_site_positions(motion: BvhMotion, glob_rot: np.ndarray, glob_pos: np.ndarray
                       ) -> dict[int, np.ndarray]:
  """{joint index: End Site position [T, 3]} for joints that have an End Site."""
  return {i: glob_pos[:, i] + glob_rot[:, i] @ j.end_site
          for i, j in enumerate(motion.joints) if j.end_site is not None}


def rest_positions(motion: BvhMotion) -> np.ndarray:
  """Rest-pose (all channels zero, OFFSETs only) positions [J + E, 3] of joints and End Sites."""
  pos = np.zeros((len(motion.joints), 3))
  for i, j in enumerate(motion.joints):
    pos[i] = j.offset + (pos[j.parent] if j.parent >= 0 else 0.0)
  ends = [pos[i] + j.end_site for i, j in enumerate(motion.joints) if j.end_site is not None]
  return np.concatenate([pos, np.reshape(ends, (-1, 3))], axis=0)


def infer_scale(motion: BvhMotion) -> float:
  """Metres per file unit from the size of the rest pose.

  The rest pose's largest extent (height, or arm span in a T-pose) of a person
  is 1-2.2 m; we accept 0.5-3 as metres, 50-300 as centimetres and 500-3000 as
  millimetres. Anything else (inches, CMU's 1/0.45-inch units, giants, toys)
  needs an explicit unit.
  """
  rest = rest_positions(motion)
  extent = float(np.max(rest.max(0) - rest.min(0)))
  for lo, hi, unit in ((0.5, 3.0, "m"), (50.0, 300.0, "cm"), (500.0, 3000.0, "mm")):
    if lo <= extent <= hi:
      return UNITS[unit]
  raise BvhMappingError(
      f"cannot infer the unit of this BVH: its rest pose spans {extent:.4g} file units, which is "
      "not a person's size in m, cm or mm. Pass the unit explicitly (unit='inch' / --unit=inch, "
      "or a number of metres per file unit, e.g. --unit=0.05644 for CMU's 1/0.45-inch units).")


def resolve_scale(motion: BvhMotion, unit: Union[str, float]) -> float:
  """Metres per file unit for `unit` in "auto", "m", "cm", "mm", "inch" or a positive number."""
  if isinstance(unit, (int, float)) and not isinstance(unit, bool):
    scale = float(unit)
  elif unit == "auto":
    return infer_scale(motion)
  elif unit in UNITS:
    return UNITS[unit]
  else:
    try:
      scale = float(unit)
    except (TypeError, ValueError):
      raise ValueError(f"unknown unit {unit!r}; use auto, {', '.join(UNITS)} or metres per "
                       "file unit as a number.") from None
  if not (scale > 0 and math.isfinite(scale)):
    raise ValueError(f"unit scale must be a positive number of metres per file unit, got {unit!r}.")
  return scale


# ----------------------------------------------------------------------------
# Mapping a rig onto our 22 joints.
# ----------------------------------------------------------------------------


def normalize_name(name: str) -> str:
  """Lowercase alphanumerics of `name` after its last ':' or '|' namespace separator."""
  name = re.split(r"[:|]", name)[-1]
  return re.sub(r"[^0-9a-z]", "", name.lower())


def _sided(left: Sequence[str]) -> dict[str, list[str]]:
  """Left aliases and their right twins (left->right, l->r at either end)."""
  right = []
  for a in left:
    if a.startswith("left"):
      right.append("right" + a[4:])
    elif a.startswith("l"):
      right.append("r" + a[1:])
    elif a.endswith("left"):
      right.append(a[:-4] + "right")
    elif a.endswith("l"):
      right.append(a[:-1] + "r")
    else:
      raise AssertionError(a)
  return {"L": list(left), "R": right}


def _table(pelvis, hip, knee, ankle, toe, neck, head, collar, shoulder, elbow, wrist):
  """Alias table {our index: [normalised aliases, best first]} for one convention."""
  t = {PELVIS: list(pelvis), NECK: list(neck), HEAD: list(head)}
  for (li, ri), left in (((L_HIP, R_HIP), hip), ((L_KNEE, R_KNEE), knee),
                         ((L_ANKLE, R_ANKLE), ankle), ((L_FOOT, R_FOOT), toe),
                         ((L_COLLAR, R_COLLAR), collar), ((L_SHOULDER, R_SHOULDER), shoulder),
                         ((L_ELBOW, R_ELBOW), elbow), ((L_WRIST, R_WRIST), wrist)):
    sided = _sided(left)
    t[li], t[ri] = sided["L"], sided["R"]
  return t


ALIAS_TABLES: dict[str, dict[int, list[str]]] = {
    "smpl": _table(pelvis=["pelvis"], hip=["lefthip", "lhip"], knee=["leftknee", "lknee"],
                   ankle=["leftankle", "lankle"], toe=["leftfoot", "lfoot"], neck=["neck"],
                   head=["head"], collar=["leftcollar", "lcollar"],
                   shoulder=["leftshoulder", "lshoulder"], elbow=["leftelbow", "lelbow"],
                   wrist=["leftwrist", "lwrist"]),
    # CMU (cgspeed BVH), Mixamo and MotionBuilder/HumanIK share these names.
    "cmu_mixamo_humanik": _table(
        pelvis=["hips"], hip=["leftupleg"], knee=["leftleg"], ankle=["leftfoot"],
        toe=["lefttoebase", "lefttoe"], neck=["neck"], head=["head"], collar=["leftshoulder"],
        shoulder=["leftarm"], elbow=["leftforearm"], wrist=["lefthand"]),
    "unreal": _table(pelvis=["pelvis"], hip=["thighl"], knee=["calfl"], ankle=["footl"],
                     toe=["balll"], neck=["neck01", "neck"], head=["head"], collar=["claviclel"],
                     shoulder=["upperarml"], elbow=["lowerarml"], wrist=["handl"]),
    "biped": _table(pelvis=["pelvis"], hip=["lthigh"], knee=["lcalf"], ankle=["lfoot"],
                    toe=["ltoe0", "ltoe"], neck=["neck"], head=["head"], collar=["lclavicle"],
                    shoulder=["lupperarm"], elbow=["lforearm"], wrist=["lhand"]),
}


@dataclasses.dataclass(frozen=True)
class JointSource:
  """Where one of our joints comes from in the rig.

  kind "joint": the rig joint `indices[0]`; "end_site": the End Site of rig
  joint `indices[0]`; "chain": the point at arc-length `fraction` (0..1) of
  the polyline through rig joints `indices`.
  """
  kind: str
  indices: tuple[int, ...]
  fraction: float = 0.0

  def describe(self, names: Sequence[str]) -> str:
    if self.kind == "joint":
      return names[self.indices[0]]
    if self.kind == "end_site":
      return f"End Site of {names[self.indices[0]]}"
    return (f"{self.fraction:.3f} along " + " -> ".join(names[i] for i in self.indices))


@dataclasses.dataclass(frozen=True)
class SkeletonMapping:
  """For each of our 22 joints, its `JointSource` in a rig with joint `names`."""
  sources: tuple[JointSource, ...]
  names: tuple[str, ...]

  def describe(self) -> dict[str, str]:
    return {n: s.describe(self.names) for n, s in zip(skeleton.JOINT_NAMES, self.sources)}


def load_mapping(mapping: Union[None, str, pathlib.Path, Mapping[str, str]]) -> dict[str, str]:
  """A user mapping from a dict or a JSON file path ({our joint name: rig joint name})."""
  if mapping is None:
    return {}
  if isinstance(mapping, (str, pathlib.Path)):
    path = pathlib.Path(mapping)
    if not path.is_file():
      raise FileNotFoundError(f"mapping file not found: {path}")
    try:
      mapping = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"mapping file {path} is not valid JSON: {e}") from None
    if not isinstance(mapping, dict):
      raise ValueError(f"mapping file {path} must hold a JSON object {{our joint: rig joint}}.")
  return {str(k): str(v) for k, v in mapping.items()}


def _our_index(key: str) -> int:
  by_norm = {normalize_name(n): i for i, n in enumerate(skeleton.JOINT_NAMES)}
  if key.isdigit() and int(key) < NUM_JOINTS:
    return int(key)
  if normalize_name(key) in by_norm:
    return by_norm[normalize_name(key)]
  raise BvhMappingError(f"mapping key {key!r} is not one of our joints: "
                        f"{', '.join(skeleton.JOINT_NAMES)} (or an index 0..21).")


def _match_table(norm: list[str], table: Mapping[int, list[str]], used: set[int]
                 ) -> dict[int, int]:
  """{our index: rig index} by exact, then suffix, normalised-name matches."""
  found: dict[int, int] = {}
  taken = set(used)
  for exact in (True, False):
    for ours, aliases in table.items():
      if ours in found:
        continue
      for alias in aliases:
        hits = [i for i, n in enumerate(norm) if i not in taken and
                (n == alias if exact else n.endswith(alias))]
        if hits:
          hit = min(hits, key=lambda i: len(norm[i]))
          found[ours] = hit
          taken.add(hit)
          break
  return found


def _ancestors(parents: np.ndarray, i: int) -> list[int]:
  out = []
  while parents[i] >= 0:
    i = int(parents[i])
    out.append(i)
  return out


def map_to_skeleton(motion: BvhMotion,
                    mapping: Union[None, str, pathlib.Path, Mapping[str, str]] = None,
                    source: str = "BVH rig") -> SkeletonMapping:
  """Maps the rig of `motion` onto our 22 joints (see the module docstring for the rules).

  Args:
    motion: the parsed BVH.
    mapping: optional {our joint name (or index): rig joint name} (dict or JSON
      file); rig names match exactly, then case/namespace-insensitively.
    source: names the rig in errors (e.g. the file path).

  Raises:
    BvhMappingError: naming the joints that could not be mapped and listing
      the rig's joint names.
  """
  names = motion.names
  norm = [normalize_name(n) for n in names]
  parents = motion.parents
  sources: dict[int, JointSource] = {}

  def rig_index(rig_name: str) -> int:
    if rig_name in names:
      return names.index(rig_name)
    hits = [i for i, n in enumerate(norm) if n == normalize_name(rig_name)]
    if len(hits) != 1:
      raise BvhMappingError(
          f"{source}: mapping names rig joint {rig_name!r}, which is "
          f"{'ambiguous' if hits else 'not in the rig'}. Rig joints: {', '.join(names)}.")
    return hits[0]

  for key, rig_name in load_mapping(mapping).items():
    sources[_our_index(key)] = JointSource("joint", (rig_index(rig_name),))

  user_mapped = set(sources)
  # Alias tables for everything the user did not map, except the spine.
  used = {s.indices[0] for s in sources.values()}
  wanted = [i for i in range(NUM_JOINTS) if i not in sources and i not in SPINE_JOINTS]
  own = {i: [normalize_name(skeleton.JOINT_NAMES[i])] for i in wanted}
  tables = {"llamo": own, **{k: {i: t[i] for i in wanted} for k, t in ALIAS_TABLES.items()}}
  matches = {k: _match_table(norm, t, used) for k, t in tables.items()}
  best = max(matches, key=lambda k: len(matches[k]))  # first table wins ties
  found = dict(matches[best])
  taken = used | set(found.values())
  for k, t in tables.items():
    if k == best:
      continue
    rest = {i: a for i, a in t.items() if i not in found}
    extra = _match_table(norm, rest, taken)
    found.update(extra)
    taken |= set(extra.values())
  for i, r in found.items():
    sources[i] = JointSource("joint", (r,))
  # No toe joint: the ankle's End Site marks the toe.
  for toe, ankle in ((L_FOOT, L_ANKLE), (R_FOOT, R_ANKLE)):
    if toe not in sources and ankle in sources and sources[ankle].kind == "joint":
      a = sources[ankle].indices[0]
      if motion.joints[a].end_site is not None:
        sources[toe] = JointSource("end_site", (a,))

  missing = [i for i in range(NUM_JOINTS) if i not in sources and i not in SPINE_JOINTS]
  if missing:
    raise _missing_error(source, missing, names)

  # Zero-length bones: measured on the first frame (robust to 6-channel joints).
  first = dataclasses.replace(motion, values=motion.values[:1])
  pos0 = global_positions(first)[0]
  eps = 1e-3 * max(float(np.ptp(pos0, axis=0).max()), 1e-12)
  zero = [i > 0 and j.parent >= 0 and np.linalg.norm(pos0[i] - pos0[j.parent]) < eps
          for i, j in enumerate(motion.joints)]
  _step_off_zero_joints(sources, parents, zero, keep=user_mapped)
  _map_spine(sources, motion, source, zero)
  mapped = SkeletonMapping(sources=tuple(sources[i] for i in range(NUM_JOINTS)),
                           names=tuple(names))
  return _fix_degenerate_bones(mapped, first, parents, eps, source)


def _step_off_zero_joints(sources: dict[int, JointSource], parents: np.ndarray,
                          zero: Sequence[bool], keep: set[int]) -> None:
  """Moves a mapped joint that sits on its rig parent to its only child (CMU: Neck -> Neck1).

  Joints of ours in `keep` (the user's mapping) stay where they are.
  """
  used = {s.indices[0] for s in sources.values() if s.kind == "joint"}
  for ours, s in list(sources.items()):
    if ours == PELVIS or ours in keep or s.kind != "joint":
      continue
    r = s.indices[0]
    while zero[r]:
      children = np.nonzero(parents == r)[0]
      if len(children) != 1 or int(children[0]) in used:
        break
      used.discard(r)
      r = int(children[0])
      used.add(r)
    sources[ours] = JointSource("joint", (r,))


def _rig_path(parents: np.ndarray, top: int, bottom: int) -> tuple[int, ...] | None:
  """Rig joints from `top` down to its descendant `bottom` (inclusive), or None."""
  path = [bottom]
  while path[-1] != top:
    if parents[path[-1]] < 0:
      return None
    path.append(int(parents[path[-1]]))
  return tuple(reversed(path))


def _fix_degenerate_bones(mapped: SkeletonMapping, first: BvhMotion, parents: np.ndarray,
                          eps: float, source: str) -> SkeletonMapping:
  """Our joints sitting on their (our) parent move along the rig path to their child.

  CMU's LeftShoulder (our collar) has a zero OFFSET from Spine1 (our spine3):
  the collar becomes the point at |o_collar| / (|o_collar| + |o_shoulder|) of
  the rig path Spine1 -> LeftShoulder -> LeftArm. Zero-length bones would make
  the bone directions of inverse kinematics undefined.
  """
  sources = list(mapped.sources)
  lengths = np.linalg.norm(np.asarray(skeleton.TARGET_OFFSETS), axis=-1)
  children = {p: [c for c in range(NUM_JOINTS) if skeleton.PARENTS[c] == p]
              for p in range(NUM_JOINTS)}
  pos = apply_mapping(first, dataclasses.replace(mapped, sources=tuple(sources)))[0]
  bad = []
  for j in range(1, NUM_JOINTS):
    p = skeleton.PARENTS[j]
    if np.linalg.norm(pos[j] - pos[p]) >= eps:
      continue
    fixed = False
    if sources[j].kind == "joint" and sources[p].kind == "joint":
      for c in children[j]:
        if sources[c].kind != "joint":
          continue
        path = _rig_path(parents, sources[p].indices[0], sources[c].indices[0])
        if path and sources[j].indices[0] in path:
          sources[j] = JointSource("chain", path, float(lengths[j] / (lengths[j] + lengths[c])))
          fixed = True
          break
    if not fixed:
      bad.append(j)
  if bad:
    names = skeleton.JOINT_NAMES
    raise BvhMappingError(
        f"{source}: these bones of ours have zero length in the rig (both ends on the same "
        "point): " + ", ".join(f"{names[skeleton.PARENTS[j]]}->{names[j]} "
                               f"({sources[j].describe(mapped.names)})" for j in bad) +
        ". Map them to rig joints that are apart (mapping=dict or --mapping=FILE.json).")
  return dataclasses.replace(mapped, sources=tuple(sources))


def _missing_error(source: str, missing: Sequence[int], names: Sequence[str]) -> BvhMappingError:
  return BvhMappingError(
      f"{source}: cannot map our joint(s) {', '.join(skeleton.JOINT_NAMES[i] for i in missing)} "
      f"onto the rig. Rig joints: {', '.join(names)}. Pass a mapping "
      "{our joint: rig joint} (mapping=dict or --mapping=FILE.json) for them; our joints are "
      f"{', '.join(skeleton.JOINT_NAMES)}.")


def _spine_fractions() -> np.ndarray:
  """Cumulative arc-length fractions of spine1, spine2, spine3, neck in the target skeleton."""
  lengths = np.linalg.norm(np.asarray(skeleton.TARGET_OFFSETS)[[SPINE1, SPINE2, SPINE3, NECK]],
                           axis=-1)
  return np.cumsum(lengths)


def _map_spine(sources: dict[int, JointSource], motion: BvhMotion, source: str,
               zero: Sequence[bool]) -> None:
  """Fills spine1/2/3 of `sources` by the spine rule (module docstring)."""
  todo = [i for i in SPINE_JOINTS if i not in sources]
  if not todo:
    return
  names, parents = motion.names, motion.parents
  pelvis, neck = sources[PELVIS].indices[0], sources[NECK].indices[0]
  up = _ancestors(parents, neck)
  if pelvis not in up:
    raise BvhMappingError(f"{source}: the neck ({names[neck]}) is not below the pelvis "
                          f"({names[pelvis]}) in the hierarchy; map the spine joints explicitly.")
  # Pelvis-exclusive, bottom to top; joints on their parent's point (CMU's
  # LowerBack, Neck) add nothing to the polyline and are left out.
  given = {sources[i].indices[0] for i in SPINE_JOINTS if i in sources}
  chain = [a for a in reversed(up[:up.index(pelvis)]) if not zero[a] or a in given]
  if SPINE3 in sources:
    s3 = sources[SPINE3].indices[0]
    if s3 not in chain:
      raise BvhMappingError(f"{source}: mapped spine3 ({names[s3]}) is not between the pelvis "
                            "and the neck.")
    chest = s3
  else:
    chest = None
    branches = []
    for side in ((L_COLLAR, R_COLLAR), (L_SHOULDER, R_SHOULDER)):
      srcs = [sources[i] for i in side]
      if all(s.kind == "joint" for s in srcs):
        branches = [next((a for a in _ancestors(parents, s.indices[0]) if a in chain or
                          a in (pelvis, neck)), None) for s in srcs]
        if side == (L_COLLAR, R_COLLAR) and any(s.indices[0] in chain for s in srcs):
          continue  # collars mapped onto the spine itself: try the shoulders
        break
    if branches and branches[0] == branches[1] and branches[0] in chain:
      chest = branches[0]
  frac = _spine_fractions()
  if chest is None:
    # No branch point: spread all three spine joints over pelvis..neck.
    poly = (pelvis, *chain, neck)
    for i, f in zip(SPINE_JOINTS, frac[:3] / frac[3]):
      if i not in sources:
        sources[i] = JointSource("chain", poly, float(f))
    return
  lower = chain[:chain.index(chest) + 1]
  sources.setdefault(SPINE3, JointSource("joint", (chest,)))
  if len(lower) == 3:
    sources.setdefault(SPINE1, JointSource("joint", (lower[0],)))
    sources.setdefault(SPINE2, JointSource("joint", (lower[1],)))
    return
  poly = (pelvis, *lower)
  for i, f in zip((SPINE1, SPINE2), frac[:2] / frac[2]):
    sources.setdefault(i, JointSource("chain", poly, float(f)))


def _polyline_point(points: np.ndarray, fraction: float) -> np.ndarray:
  """Point at arc-length `fraction` of polylines `points` [T, P, 3] -> [T, 3]."""
  seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)  # [T, P-1]
  cum = np.concatenate([np.zeros_like(seg[:, :1]), np.cumsum(seg, axis=1)], axis=1)
  target = fraction * cum[:, -1]  # [T]
  k = (cum[:, 1:-1] <= target[:, None]).sum(axis=1)  # segment index in [0, P-2]
  seg_k = np.take_along_axis(seg, k[:, None], axis=1)[:, 0]
  start = np.take_along_axis(cum, k[:, None], axis=1)[:, 0]
  w = np.where(seg_k > 0, (target - start) / np.where(seg_k > 0, seg_k, 1.0), 0.0)
  t = np.arange(points.shape[0])
  out = points[t, k] + w[:, None] * (points[t, k + 1] - points[t, k])
  return out


def apply_mapping(motion: BvhMotion, mapping: SkeletonMapping) -> np.ndarray:
  """Our 22 joints [T, 22, 3] (file units, file axes) from the rig's FK."""
  glob_rot, glob_pos = global_transforms(motion)
  ends = end_site_positions(motion, glob_rot, glob_pos)
  out = np.empty((motion.num_frames, NUM_JOINTS, 3))
  for i, s in enumerate(mapping.sources):
    if s.kind == "joint":
      out[:, i] = glob_pos[:, s.indices[0]]
    elif s.kind == "end_site":
      out[:, i] = ends[s.indices[0]]
    else:
      out[:, i] = _polyline_point(glob_pos[:, list(s.indices)], s.fraction)
  return out


def resample(x: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
  """Linearly interpolates x [T, ...] sampled at `src_fps` at times k / dst_fps.

  Keeps every target time inside the clip: the output has
  floor((T - 1) * dst_fps / src_fps + 1e-9) + 1 frames. No low-pass filter is
  applied before downsampling (as HumanML3D, which keeps every k-th frame); an
  integer ratio such as 60 -> 20 returns exactly every 3rd frame.
  """
  if src_fps <= 0 or dst_fps <= 0:
    raise ValueError(f"fps must be > 0, got {src_fps} -> {dst_fps}.")
  num_in = x.shape[0]
  if abs(src_fps - dst_fps) < 1e-9 * src_fps:
    return x.copy()
  num_out = int(math.floor((num_in - 1) * dst_fps / src_fps + 1e-9)) + 1
  pos = np.arange(num_out) * (src_fps / dst_fps)
  lo = np.minimum(np.floor(pos + 1e-9).astype(np.int64), num_in - 1)
  hi = np.minimum(lo + 1, num_in - 1)
  w = np.clip(pos - lo, 0.0, 1.0).reshape((-1,) + (1,) * (x.ndim - 1))
  return x[lo] * (1.0 - w) + x[hi] * w


def to_y_up(x: np.ndarray, up: str) -> np.ndarray:
  """Positions [..., 3] with up axis `up` ("y" or "z") -> Y-up (z-up: (x, y, z) -> (x, z, -y))."""
  if up == "y":
    return x
  if up == "z":
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], axis=-1)
  raise ValueError(f"up must be 'y' or 'z', got {up!r}.")


def to_joints(motion: BvhMotion, *,
              mapping: Union[None, str, pathlib.Path, Mapping[str, str], SkeletonMapping] = None,
              unit: Union[str, float] = "auto", up: str = "y", fps: float | None = None,
              source: str = "BVH rig") -> np.ndarray:
  """Our 22 joints [T', 22, 3] in metres, Y-up, at `fps` (None: the file's own rate).

  Args:
    motion: parsed BVH (any rig).
    mapping: user joint mapping (see `map_to_skeleton`) or a resolved `SkeletonMapping`.
    unit: file unit: "auto" (from the rest pose's size), "m", "cm", "mm", "inch",
      or metres per file unit.
    up: the file's up axis, "y" or "z".
    fps: output frame rate; positions are linearly interpolated in time.
    source: names the file in errors.
  """
  if not isinstance(mapping, SkeletonMapping):
    mapping = map_to_skeleton(motion, mapping, source=source)
  joints = to_y_up(apply_mapping(motion, mapping) * resolve_scale(motion, unit), up)
  rise = float(np.mean(joints[:, HEAD] - joints[:, PELVIS], axis=0)[1])
  spread = np.abs(np.mean(joints[:, HEAD] - joints[:, PELVIS], axis=0))
  if rise < spread.max() * 0.5:
    logging.warning("%s: the head is not above the pelvis along +Y on average (mean head - "
                    "pelvis = %s m); if the file is Z-up pass up='z' (--up=z).", source,
                    np.round(np.mean(joints[:, HEAD] - joints[:, PELVIS], axis=0), 3))
  if fps is not None:
    joints = resample(joints, motion.fps, fps)
  return joints


def load_joints(path: Union[str, pathlib.Path], **kwargs) -> tuple[np.ndarray, float]:
  """Reads a BVH file and returns (our joints [T, 22, 3] metres, fps); kwargs as `to_joints`."""
  motion = read_bvh(path)
  joints = to_joints(motion, source=str(path), **kwargs)
  fps = kwargs.get("fps") or motion.fps
  return joints, float(fps)


# ----------------------------------------------------------------------------
# Export of our motion.
# ----------------------------------------------------------------------------

# End Sites of our leaf joints (head top, toe tips, finger tips), as fractions
# of the parent bone continued; only cosmetic (BVH viewers draw them).
_LEAF_EXTENSION = 0.5


def motion_from_rotations(local_quats: np.ndarray, root_pos: np.ndarray, *, fps: float,
                          unit: str = "cm", order: str = "ZXY",
                          offsets: np.ndarray | None = None) -> BvhMotion:
  """A BVH of our 22-joint hierarchy from local rotations and the root trajectory.

  Args:
    local_quats: [T, 22, 4] (w, x, y, z) rotations relative to the parent, as
      `skeleton.forward_kinematics` takes them.
    root_pos: [T, 3] root (pelvis) positions in metres.
    fps: frame rate written as Frame Time = 1 / fps.
    unit: "cm" or "m" (any of `UNITS`) for OFFSETs and root positions.
    order: Euler order of the rotation channels, e.g. "ZXY" or "XYZ"
      (written as Zrotation Xrotation Yrotation, meaning Rz @ Rx @ Ry).
    offsets: [22, 3] bone offsets in metres (default skeleton.TARGET_OFFSETS).
  """
  local_quats = np.asarray(local_quats, np.float64)
  root_pos = np.asarray(root_pos, np.float64)
  if local_quats.ndim != 3 or local_quats.shape[1:] != (NUM_JOINTS, 4):
    raise ValueError(f"local_quats must be [T, 22, 4], got {local_quats.shape}.")
  if root_pos.shape != (local_quats.shape[0], 3):
    raise ValueError(f"root_pos must be [T, 3] with T={local_quats.shape[0]}, got {root_pos.shape}.")
  if unit not in UNITS:
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}.")
  order = order.upper()
  if sorted(order) != ["X", "Y", "Z"]:
    raise ValueError(f"order must be a permutation of XYZ, got {order!r}.")
  offsets = np.asarray(skeleton.TARGET_OFFSETS if offsets is None else offsets, np.float64)
  scale = 1.0 / UNITS[unit]
  num_frames = local_quats.shape[0]
  quats = local_quats / np.linalg.norm(local_quats, axis=-1, keepdims=True)
  xyzw = np.concatenate([quats[..., 1:], quats[..., :1]], axis=-1).reshape(-1, 4)
  with warnings.catch_warnings():
    # Gimbal lock only makes the angle split non-unique; the rotation stays exact.
    warnings.simplefilter("ignore", UserWarning)
    euler = Rotation.from_quat(xyzw).as_euler(order, degrees=True)
  # Unwrapping keeps curves continuous for animation tools; each elementary
  # rotation is 360-periodic, so the rotation does not change.
  euler = np.unwrap(euler.reshape(num_frames, NUM_JOINTS, 3), period=360.0, axis=0)

  parents = np.asarray(skeleton.PARENTS)
  has_child = np.zeros(NUM_JOINTS, bool)
  has_child[parents[parents >= 0]] = True
  rot_channels = tuple(f"{a}rotation" for a in order)
  joints = []
  for i, name in enumerate(skeleton.JOINT_NAMES):
    p = int(parents[i])
    end = None if has_child[i] else offsets[i] * _LEAF_EXTENSION * scale
    channels = (_POSITION_CHANNELS + rot_channels) if p < 0 else rot_channels
    joints.append(BvhJoint(name=name, parent=p, offset=np.zeros(3) if p < 0 else offsets[i] * scale,
                           channels=channels, end_site=end))
  # Reorder depth-first so channel columns follow the file's joint order.
  order_df = _depth_first(parents)
  remap = {old: new for new, old in enumerate(order_df)}
  joints = [dataclasses.replace(joints[old], parent=remap.get(joints[old].parent, -1))
            for old in order_df]
  cols = []
  for old in order_df:
    if parents[old] < 0:
      cols.append(root_pos * scale)
    cols.append(euler[:, old])
  return BvhMotion(joints=tuple(joints), frame_time=1.0 / fps,
                   values=np.concatenate(cols, axis=1))


def _depth_first(parents: np.ndarray) -> list[int]:
  out = []

  def visit(i):
    out.append(i)
    for c in np.nonzero(parents == i)[0]:
      visit(int(c))

  visit(int(np.nonzero(parents < 0)[0][0]))
  return out


def motion_from_joints(joints: np.ndarray, *, fps: float, unit: str = "cm",
                       order: str = "ZXY") -> BvhMotion:
  """A BVH of our hierarchy from joint positions [T, 22, 3] (metres) via inverse kinematics.

  The BVH holds the rotations of `skeleton.inverse_kinematics(joints)` on the
  target skeleton, so it reproduces `skeleton.forward_kinematics` of those
  rotations (bone lengths become TARGET_OFFSETS'), not `joints` exactly.
  """
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
    raise ValueError(f"joints must be [T, 22, 3], got {joints.shape}.")
  local_quats = skeleton.inverse_kinematics(joints)
  return motion_from_rotations(np.asarray(local_quats), joints[:, PELVIS], fps=fps, unit=unit,
                               order=order)
