"""Retargeting a BVH rig onto our 22 joints: name mapping, units, up axis, frame rate.

Import onto our skeleton (`to_joints`): global joint positions of the rig
(`rig.global_transforms`) -> metres (`unit`) -> Y-up (`up`) -> our 22 joints
by name (`map_to_skeleton`) -> resampled to `fps` by linear interpolation of
positions in time.

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
import os
import re
from collections.abc import Mapping, Sequence
from typing import Union

from etils import epath
import numpy as np

from llamo_jax.motion import skeleton
from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.motion.bvh import rig
from llamo_jax.motion.bvh.format import BvhMotion
from llamo_jax.motion.skeleton import (HEAD, L_ANKLE, L_COLLAR, L_ELBOW, L_FOOT, L_HIP, L_KNEE,
                                       L_SHOULDER, L_WRIST, NECK, NUM_JOINTS, PELVIS, R_ANKLE,
                                       R_COLLAR, R_ELBOW, R_FOOT, R_HIP, R_KNEE, R_SHOULDER,
                                       R_WRIST, SPINE1, SPINE2, SPINE3, SPINE_JOINTS)


class BvhMappingError(ValueError):
  """A BVH rig whose joints cannot be mapped onto our 22 joints."""


def infer_scale(motion: BvhMotion) -> float:
  """Metres per file unit from the size of the rest pose.

  The rest pose's largest extent (height, or arm span in a T-pose) of a person
  is 1-2.2 m; we accept 0.5-3 as metres, 50-300 as centimetres and 500-3000 as
  millimetres. Anything else (inches, CMU's 1/0.45-inch units, giants, toys)
  needs an explicit unit.
  """
  rest = rig.rest_positions(motion)
  extent = float(np.max(rest.max(0) - rest.min(0)))
  for lo, hi, unit in ((0.5, 3.0, "m"), (50.0, 300.0, "cm"), (500.0, 3000.0, "mm")):
    if lo <= extent <= hi:
      return bvh_format.UNITS[unit]
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
  elif unit in bvh_format.UNITS:
    return bvh_format.UNITS[unit]
  else:
    try:
      scale = float(unit)
    except (TypeError, ValueError):
      raise ValueError(f"unknown unit {unit!r}; use auto, {', '.join(bvh_format.UNITS)} or "
                       "metres per file unit as a number.") from None
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


def load_mapping(mapping: Union[None, str, os.PathLike, Mapping[str, str]]) -> dict[str, str]:
  """A user mapping from a dict or a JSON file path ({our joint name: rig joint name})."""
  if mapping is None:
    return {}
  if isinstance(mapping, (str, os.PathLike)):
    path = epath.Path(mapping)
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
                    mapping: Union[None, str, os.PathLike, Mapping[str, str]] = None,
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
  pos0 = rig.global_positions(first)[0]
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
  glob_rot, glob_pos = rig.global_transforms(motion)
  ends = rig.end_site_positions(motion, glob_rot, glob_pos)
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
              mapping: Union[None, str, os.PathLike, Mapping[str, str], SkeletonMapping] = None,
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


def load_joints(path: Union[str, os.PathLike], **kwargs) -> tuple[np.ndarray, float]:
  """Reads a BVH file and returns (our joints [T, 22, 3] metres, fps); kwargs as `to_joints`."""
  motion = bvh_format.read_bvh(path)
  joints = to_joints(motion, source=str(path), **kwargs)
  fps = kwargs.get("fps") or motion.fps
  return joints, float(fps)
