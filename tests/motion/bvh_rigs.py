"""Tiny hand-built BVH rigs in the naming conventions of common mocap sources (test helper)."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

# CMU-style (cgspeed) rig in metres, Y-up, facing +Z, left = +X:
# (name, parent, offset, end site or None).
_CMU = [
    ("Hips", None, (0.0, 0.95, 0.0), None),
    ("LHipJoint", "Hips", (0.0, 0.0, 0.0), None),
    ("LeftUpLeg", "LHipJoint", (0.09, -0.06, 0.0), None),
    ("LeftLeg", "LeftUpLeg", (0.0, -0.40, 0.01), None),
    ("LeftFoot", "LeftLeg", (0.0, -0.42, -0.02), None),
    ("LeftToeBase", "LeftFoot", (0.0, -0.05, 0.12), (0.0, 0.0, 0.05)),
    ("RHipJoint", "Hips", (0.0, 0.0, 0.0), None),
    ("RightUpLeg", "RHipJoint", (-0.09, -0.06, 0.0), None),
    ("RightLeg", "RightUpLeg", (0.0, -0.40, 0.01), None),
    ("RightFoot", "RightLeg", (0.0, -0.42, -0.02), None),
    ("RightToeBase", "RightFoot", (0.0, -0.05, 0.12), (0.0, 0.0, 0.05)),
    ("LowerBack", "Hips", (0.0, 0.10, -0.01), None),
    ("Spine", "LowerBack", (0.0, 0.12, 0.0), None),
    ("Spine1", "Spine", (0.0, 0.08, 0.01), None),
    ("Neck", "Spine1", (0.0, 0.17, -0.01), None),
    ("Neck1", "Neck", (0.0, 0.05, 0.0), None),
    ("Head", "Neck1", (0.0, 0.07, 0.02), (0.0, 0.12, 0.0)),
    ("LeftShoulder", "Spine1", (0.04, 0.11, 0.0), None),
    ("LeftArm", "LeftShoulder", (0.13, 0.0, 0.0), None),
    ("LeftForeArm", "LeftArm", (0.27, 0.0, 0.0), None),
    ("LeftHand", "LeftForeArm", (0.25, 0.0, 0.0), None),
    ("LeftHandIndex1", "LeftHand", (0.06, 0.0, 0.01), (0.03, 0.0, 0.0)),
    ("LThumb", "LeftHand", (0.02, 0.0, 0.03), (0.0, 0.0, 0.03)),
    ("RightShoulder", "Spine1", (-0.04, 0.11, 0.0), None),
    ("RightArm", "RightShoulder", (-0.13, 0.0, 0.0), None),
    ("RightForeArm", "RightArm", (-0.27, 0.0, 0.0), None),
    ("RightHand", "RightForeArm", (-0.25, 0.0, 0.0), None),
    ("RightHandIndex1", "RightHand", (-0.06, 0.0, 0.01), (-0.03, 0.0, 0.0)),
    ("RThumb", "RightHand", (-0.02, 0.0, 0.03), (0.0, 0.0, 0.03)),
]

# SMPL names for the CMU joints that have an SMPL twin (others are dropped).
_TO_SMPL_SNAKE = {
    "Hips": "pelvis", "LeftUpLeg": "left_hip", "RightUpLeg": "right_hip", "LowerBack": "spine1",
    "LeftLeg": "left_knee", "RightLeg": "right_knee", "Spine": "spine2", "LeftFoot": "left_ankle",
    "RightFoot": "right_ankle", "Spine1": "spine3", "LeftToeBase": "left_foot",
    "RightToeBase": "right_foot", "Neck": "neck", "LeftShoulder": "left_collar",
    "RightShoulder": "right_collar", "Head": "head", "LeftArm": "left_shoulder",
    "RightArm": "right_shoulder", "LeftForeArm": "left_elbow", "RightForeArm": "right_elbow",
    "LeftHand": "left_wrist", "RightHand": "right_wrist",
}


def rig(style: str = "cmu") -> list[tuple]:
  """A rig spec in one naming convention.

  Styles: "cmu"; "cmu_zero" (CMU with cgspeed's zero offsets); "mixamo" (mixamorig: prefix, no hip joints / Neck1);
  "humanik" (four spine joints, toe end joints); "smpl_snake" (left_hip ...);
  "smpl_caps" (L_Hip ...); "no_toes" (CMU without toe joints; ankles get End
  Sites); "no_left_arm" (CMU without LeftArm and below).
  """
  spec = [list(j) for j in _CMU]
  if style == "cmu":
    pass
  elif style == "cmu_zero":
    # As the cgspeed CMU files: LowerBack, Neck and the Shoulders sit on their parents.
    spec = _zero_offsets(spec, ["LowerBack", "Neck", "LeftShoulder", "RightShoulder"])
  elif style == "mixamo":
    spec = _drop(spec, {"LHipJoint", "RHipJoint", "Neck1", "LowerBack"})
    spec = [[f"mixamorig:{n}", p and f"mixamorig:{p}", o, e] for n, p, o, e in spec]
  elif style == "humanik":
    # Hips -> Spine -> Spine1 -> Spine2 -> Spine3 (collars) -> Neck; toes with end joints.
    spec = _drop(spec, {"LHipJoint", "RHipJoint", "LowerBack", "Neck1"})
    spec = [[{"Spine": "Spine1", "Spine1": "Spine3"}.get(n, n),
             {"Spine": "Spine1", "Spine1": "Spine3"}.get(p, p), o, e] for n, p, o, e in spec]
    i = [s[0] for s in spec].index("Spine1")
    spec.insert(i, ["Spine", "Hips", (0.0, 0.07, -0.01), None])
    spec[i + 1][1] = "Spine"
    spec.insert(i + 2, ["Spine2", "Spine1", (0.0, 0.06, 0.0), None])
    spec[[s[0] for s in spec].index("Spine3")][1] = "Spine2"
    for side in ("Left", "Right"):
      k = [s[0] for s in spec].index(f"{side}ToeBase")
      spec[k][3] = None
      spec.insert(k + 1, [f"{side}Toe_End", f"{side}ToeBase", (0.0, 0.0, 0.05), (0.0, 0.0, 0.01)])
  elif style in ("smpl_snake", "smpl_caps"):
    spec = _drop(spec, {n for n, *_ in spec if n not in _TO_SMPL_SNAKE})
    rename = dict(_TO_SMPL_SNAKE)
    if style == "smpl_caps":
      rename = {k: _caps(v) for k, v in rename.items()}
    spec = [[rename[n], p and rename[p], o, e] for n, p, o, e in spec]
  elif style == "no_toes":
    spec = _drop(spec, {"LeftToeBase", "RightToeBase"})
    for s in spec:
      if s[0] in ("LeftFoot", "RightFoot"):
        s[3] = (0.0, -0.05, 0.14)
  elif style == "no_left_arm":
    spec = _drop(spec, {"LeftArm"})
  else:
    raise ValueError(style)
  return [tuple(s) for s in spec]


def _caps(snake: str) -> str:
  side, _, rest = snake.partition("_")
  if side in ("left", "right"):
    return f"{side[0].upper()}_{rest.capitalize()}"
  return snake.capitalize()


def _zero_offsets(spec: list, names: list[str]) -> list:
  """Zeroes the offsets of `names`, moving them into their children (same rest pose)."""
  for name in names:
    j = next(x for x in spec if x[0] == name)
    for c in spec:
      if c[1] == name:
        c[2] = tuple(np.add(c[2], j[2]))
    j[2] = (0.0, 0.0, 0.0)
  return spec


def _drop(spec: list, names: set[str]) -> list:
  """Removes joints `names`; their children move to the removed joint's parent (offsets added)."""
  spec = [list(x) for x in spec]
  for name in [x[0] for x in spec if x[0] in names]:
    gone = next(x for x in spec if x[0] == name)
    for c in spec:
      if c[1] == name:
        c[1], c[2] = gone[1], tuple(np.add(c[2], gone[2]))
    spec.remove(gone)
  return spec


def random_angles(num_frames: int, num_joints: int, seed: int = 0, max_deg: float = 35.0
                  ) -> np.ndarray:
  """Smooth random joint rotations [T, J] as scipy Rotations' rotvecs [T, J, 3]."""
  rng = np.random.default_rng(seed)
  t = np.linspace(0, 1, num_frames)[:, None, None]
  a, b, ph = (rng.uniform(-1, 1, (1, num_joints, 3)) for _ in range(3))
  return np.deg2rad(max_deg) * (a * np.sin(2 * np.pi * t + 3 * ph) + 0.3 * b)


def bvh_text(spec: list[tuple], *, num_frames: int = 12, fps: float = 30.0, scale: float = 1.0,
             order: str = "ZXY", all_positions: bool = False, seed: int = 0,
             up: str = "y") -> str:
  """BVH text of `spec` with smooth random rotations and a moving root.

  `scale` = file units per metre (100 for cm). `order` is the rotation channel
  order; the same seed gives the same rotations in any order. `all_positions`
  gives every joint 6 channels (positions equal to its offset). `up="z"`
  writes the same motion in a Z-up frame.
  """
  names = [s[0] for s in spec]
  rotvec = random_angles(num_frames, len(spec), seed)
  t = np.linspace(0, 1, num_frames)[:, None]
  root = np.concatenate([0.8 * t, 0.95 + 0.05 * np.sin(6 * t), 0.3 * t ** 2], axis=1)
  to_file = np.eye(3) if up == "y" else np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
  lines, cols = ["HIERARCHY"], []
  rot_ch = " ".join(f"{a}rotation" for a in order)
  pos_ch = "Xposition Yposition Zposition"

  def emit(i, depth):
    name, parent, offset, end = spec[i]
    ind = "  " * depth
    lines.append(f"{ind}{'ROOT' if parent is None else 'JOINT'} {name}")
    lines.append(f"{ind}{{")
    off = to_file @ np.asarray(offset, float) * scale
    lines.append(f"{ind}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
    # Rotations in the file frame: conjugated by the axis change.
    rot = Rotation.from_matrix(to_file @ Rotation.from_rotvec(rotvec[:, i]).as_matrix() @ to_file.T)
    angles = rot.as_euler(order, degrees=True)
    if parent is None or all_positions:
      lines.append(f"{ind}  CHANNELS 6 {pos_ch} {rot_ch}")
      pos = (root @ to_file.T) * scale if parent is None else np.tile(off, (num_frames, 1))
      cols.append(pos)
    else:
      lines.append(f"{ind}  CHANNELS 3 {rot_ch}")
    cols.append(angles)
    for c in range(len(spec)):
      if spec[c][1] == name:
        emit(c, depth + 1)
    if end is not None:
      e = to_file @ np.asarray(end, float) * scale
      lines.extend([f"{ind}  End Site", f"{ind}  {{",
                    f"{ind}    OFFSET {e[0]:.6f} {e[1]:.6f} {e[2]:.6f}", f"{ind}  }}"])
    lines.append(f"{ind}}}")

  emit(names.index(next(s[0] for s in spec if s[1] is None)), 0)
  values = np.concatenate(cols, axis=1)
  lines += ["MOTION", f"Frames: {num_frames}", f"Frame Time: {1.0 / fps:.8f}"]
  lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
  return "\n".join(lines) + "\n"
