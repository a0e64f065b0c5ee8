"""One interface over the motion feature formats: "hml263" (HumanML3D) and "mm272" (MotionStreamer).

    rep = get_representation("mm272")
    feats = rep.from_joints(joints)      # [T,22,3] -> [T-1, rep.dim]
    joints = rep.to_joints(feats)        # [T, rep.dim] -> [T,22,3]
    joints = rep.to_joints_jax(feats)    # differentiable; [..., T, dim] -> [..., T,22,3]

Features drop the last frame (velocities are forward differences), so a clip of T
frames gives T-1 feature rows and decoding T rows gives T frames.

The registry here is what the rest of the package reads for the facts of each
representation: its dim, frame rate, leading root dims, and where a HumanML3D-layout
folder keeps its features and mean/std (`feature_dir`, `mean_file`, `std_file`);
the values themselves are defined next to each format's code (humanml3d.py,
rep272.py). See docs/design.md, Motion formats.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from llamo_jax.motion import humanml3d
from llamo_jax.motion import rep272
from llamo_jax.motion import skeleton


@dataclasses.dataclass(frozen=True)
class Representation:
  """A motion feature format.

  Attributes:
    name: registry name ("hml263" | "mm272").
    dim: feature size per frame.
    fps: frame rate the format is defined at (a folder's default frame rate).
    has_rotations: whether the features hold true local joint rotations that
      `to_rotations` can return (mm272); hml263's rotation block comes from a
      quirky IK and is not a usable pose.
    root_dims: the leading feature dims that describe the root (hml263: 0:4, yaw
      velocity, xz velocity, height; mm272: 0:8, xz velocity + 6D heading change).
    feature_dir: folder of the per-clip feature files in a HumanML3D-layout dataset.
    mean_file, std_file: the feature statistics' file names in such a folder.
  """
  name: str
  dim: int
  fps: int
  has_rotations: bool
  root_dims: int
  feature_dir: str
  mean_file: str
  std_file: str
  _from_joints: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False)
  _to_joints: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False)
  _to_joints_jax: Callable[[jax.Array], jax.Array] = dataclasses.field(repr=False)
  _from_rotations: Callable[..., np.ndarray] = dataclasses.field(repr=False)
  _to_rotations: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = dataclasses.field(repr=False)

  def _check(self, f: Any) -> None:
    if f.ndim < 2 or f.shape[-1] != self.dim:
      raise ValueError(f"{self.name} features must have shape [..., T, {self.dim}], got {tuple(f.shape)}")

  def from_joints(self, joints: np.ndarray) -> np.ndarray:
    """Global joints [T,22,3] (metres, Y up, at `fps`) -> features [T-1, dim] float32."""
    return self._from_joints(joints)

  def from_rotations(self, local_quats: np.ndarray, root_pos: np.ndarray,
                     offsets: np.ndarray = skeleton.TARGET_OFFSETS) -> np.ndarray:
    """Local rotations [T,22,4] (skeleton.forward_kinematics convention) + root [T,3] -> [T-1, dim]."""
    return self._from_rotations(local_quats, root_pos, offsets)

  def to_joints(self, f: np.ndarray) -> np.ndarray:
    """Features [..., T, dim] -> joints [..., T, 22, 3] (numpy float32)."""
    f = np.asarray(f)
    self._check(f)
    if f.ndim == 2:
      return self._to_joints(f)
    flat = f.reshape((-1,) + f.shape[-2:])
    return np.stack([self._to_joints(x) for x in flat]).reshape(f.shape[:-1] + (skeleton.NUM_JOINTS, 3))

  def to_joints_jax(self, f: jax.Array) -> jax.Array:
    """Differentiable, jit-able twin of `to_joints`: [..., T, dim] -> [..., T, 22, 3]."""
    self._check(f)
    fn = self._to_joints_jax
    for _ in range(f.ndim - 2):
      fn = jax.vmap(fn)
    return fn(f)

  def to_rotations(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features [T, dim] -> (local_quats [T,22,4], root_pos [T,3]); only where has_rotations."""
    if self._to_rotations is None:
      raise ValueError(f"representation {self.name!r} holds no usable joint rotations; "
                       "use to_joints, or a representation with has_rotations (mm272)")
    f = np.asarray(f)
    self._check(f)
    return self._to_rotations(f)


def _hml_from_rotations(local_quats, root_pos, offsets):
  return humanml3d.joints_to_features(skeleton.forward_kinematics(
      np.asarray(local_quats, np.float64), np.asarray(root_pos, np.float64), offsets))


_REGISTRY = {
    "hml263": Representation(
        name="hml263", dim=humanml3d.DIM, fps=humanml3d.FPS, has_rotations=False,
        root_dims=humanml3d.GROUPS["root_y"].stop, feature_dir=humanml3d.FEATURE_DIR,
        mean_file=humanml3d.MEAN_FILE, std_file=humanml3d.STD_FILE,
        _from_joints=humanml3d.joints_to_features, _to_joints=humanml3d.features_to_joints,
        _to_joints_jax=humanml3d.features_to_joints_jax, _from_rotations=_hml_from_rotations,
        _to_rotations=None),
    "mm272": Representation(
        name="mm272", dim=rep272.DIM, fps=rep272.FPS, has_rotations=True,
        root_dims=rep272.HEADING_CHANGE.stop, feature_dir=rep272.FEATURE_DIR,
        mean_file=rep272.MEAN_FILE, std_file=rep272.STD_FILE,
        _from_joints=rep272.from_joints, _to_joints=rep272.to_joints,
        _to_joints_jax=rep272.to_joints_jax, _from_rotations=rep272.from_rotations,
        _to_rotations=rep272.to_rotations),
}
NAMES = tuple(_REGISTRY)


def get_representation(name: str) -> Representation:
  """The representation called `name` ("hml263" | "mm272")."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown motion representation {name!r}; known: {', '.join(NAMES)}")
  return _REGISTRY[name]
