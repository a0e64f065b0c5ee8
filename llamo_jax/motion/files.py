"""Motion files: read any motion file we support, and turn it into joints or a BVH.

A file is a .bvh (any rig; see llamo_jax/motion/bvh/retarget.py, with unit, up axis and
joint mapping) or a .npy holding joints [T, 22, 3] (metres, Y-up), HumanML3D 263-dim
features [T, 263] or 272-dim features [T, 272]; `detect_representation` tells them apart
by shape. Features are taken as denormalised unless `mean_std_dir` names the folder of
the Mean/Std they were normalised with (Mean.npy/Std.npy for 263, Mean272.npy/Std272.npy
or a 272-long Mean.npy/Std.npy for 272). BVH export: 272 features keep their rotations,
joints and 263 features go through inverse kinematics.
"""
from __future__ import annotations

from etils import epath
import numpy as np

from llamo_jax.core import paths
from llamo_jax.motion import humanml3d
from llamo_jax.motion import representation as representation_lib
from llamo_jax.motion import skeleton
from llamo_jax.motion.bvh import export as bvh_export
from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.motion.bvh import retarget

_DEFAULT_JOINTS_FPS = 20.0  # HumanML3D's rate, for raw joint arrays


class MotionFileError(ValueError):
  """A motion file this tool cannot read as asked."""


def detect_representation(array: np.ndarray) -> str:
  """"joints", "hml263" or "mm272" from the shape of a motion array."""
  if array.ndim == 3 and array.shape[1:] == (skeleton.NUM_JOINTS, 3):
    return "joints"
  by_dim = {representation_lib.get_representation(n).dim: n for n in representation_lib.NAMES}
  if array.ndim == 2 and array.shape[1] in by_dim:
    return by_dim[array.shape[1]]
  raise MotionFileError(
      f"cannot tell what a motion array of shape {array.shape} holds: expected joints [T, 22, 3], "
      "HumanML3D features [T, 263] or 272-dim features [T, 272] (one clip, no batch axis).")


def _load_mean_std(directory: epath.Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
  if dim == humanml3d.DIM:
    return humanml3d.load_mean_std(directory)
  mm272, hml263 = (representation_lib.get_representation(n) for n in ("mm272", "hml263"))
  names = ((mm272.mean_file, mm272.std_file), (hml263.mean_file, hml263.std_file))
  for mean_name, std_name in names:
    mean_path, std_path = directory / mean_name, directory / std_name
    if mean_path.is_file() and std_path.is_file():
      mean, std = paths.load_npy(mean_path), paths.load_npy(std_path)
      if mean.shape == (dim,) and std.shape == (dim,):
        return mean, std
  raise MotionFileError(f"--mean_std_dir={directory} has no {dim}-dim Mean/Std pair (looked for "
                        f"{' and '.join(f'{m}/{s}' for m, s in names)}).")


def load_motion(path, representation: str = "auto", mean_std_dir=None, *, unit="auto",
                up: str = "y", mapping=None):
  """Reads a motion file.

  Returns:
    (array, name, fps): the array as stored after denormalisation ([T, 22, 3]
    joints for .bvh), its representation name ("joints", "hml263", "mm272")
    and its native frame rate.
  """
  path = epath.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"motion file not found: {path}")
  if path.suffix.lower() == ".bvh":
    if representation not in ("auto", "joints"):
      raise MotionFileError(f"{path} is a BVH file; --representation={representation} is for .npy.")
    joints, fps = retarget.load_joints(path, unit=unit, up=up, mapping=mapping)
    return joints, "joints", fps
  if path.suffix.lower() != ".npy":
    raise MotionFileError(f"{path}: motion files must be .npy or .bvh.")
  array = paths.load_npy(path)
  if not np.issubdtype(array.dtype, np.floating):
    raise MotionFileError(f"{path} holds {array.dtype}, not float motion data.")
  found = detect_representation(array)
  if representation != "auto" and representation != found:
    raise MotionFileError(f"{path} has shape {array.shape}, which is {found}, not "
                          f"--representation={representation}.")
  if not np.all(np.isfinite(array)):
    raise MotionFileError(f"{path} contains NaN or inf.")
  if found == "joints":
    if mean_std_dir:
      raise MotionFileError("--mean_std_dir is for feature files, not joint positions.")
    return array, found, _DEFAULT_JOINTS_FPS
  rep = representation_lib.get_representation(found)
  if mean_std_dir:
    mean, std = _load_mean_std(epath.Path(mean_std_dir), rep.dim)
    array = humanml3d.denormalize(array, mean, std)
  return array, found, float(rep.fps)


def to_joints(array: np.ndarray, name: str) -> np.ndarray:
  """Joint positions [T, 22, 3] of a loaded motion array."""
  if name == "joints":
    return array
  return np.asarray(representation_lib.get_representation(name).to_joints(array))


def to_bvh(array: np.ndarray, name: str, fps: float, unit: str = "cm",
           order: str = "ZXY") -> bvh_format.BvhMotion:
  """Our 22-joint BVH: rotations kept where the representation has them, else IK."""
  if name != "joints":
    rep = representation_lib.get_representation(name)
    if rep.has_rotations:
      local_quats, root_pos = rep.to_rotations(array)
      return bvh_export.motion_from_rotations(np.asarray(local_quats), np.asarray(root_pos),
                                              fps=fps, unit=unit, order=order)
  return bvh_export.motion_from_joints(to_joints(array, name), fps=fps, unit=unit, order=order)
