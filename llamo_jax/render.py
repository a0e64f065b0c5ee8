r"""Renders (or exports) a motion file as a stick-figure animation, a filmstrip or a BVH.

  python -m llamo_jax.render --motion=FILE --out=OUT [--caption=TEXT]
      [--representation=auto|hml263|mm272|joints] [--mean_std_dir=DIR] [--fps=N]

FILE is a .bvh (any rig; see llamo_jax/motion/bvh.py, with --unit, --up,
--mapping) or a .npy holding joints [T, 22, 3] (metres, Y-up), HumanML3D
263-dim features [T, 263] or 272-dim features [T, 272]. `auto` tells them
apart by shape. Features are taken as denormalised unless --mean_std_dir names
the folder of the Mean/Std they were normalised with (Mean.npy/Std.npy for
263, Mean272.npy/Std272.npy or a 272-long Mean.npy/Std.npy for 272).

OUT by suffix: .gif (Pillow) or .mp4 (needs ffmpeg) animation, .png/.jpg
filmstrip of --num_frames frames, or .bvh (our 22-joint hierarchy; 272
features keep their rotations, joints and 263 features go through inverse
kinematics).
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from absl import app
from absl import flags

from llamo_jax.motion import bvh
from llamo_jax.motion import humanml3d
from llamo_jax.motion import render
from llamo_jax.motion import representation as representation_lib

_DEFAULT_JOINTS_FPS = 20.0  # HumanML3D's rate, for raw joint arrays


class MotionFileError(ValueError):
  """A motion file this tool cannot read as asked."""


def detect_representation(array: np.ndarray) -> str:
  """"joints", "hml263" or "mm272" from the shape of a motion array."""
  if array.ndim == 3 and array.shape[1:] == (22, 3):
    return "joints"
  if array.ndim == 2 and array.shape[1] in (263, 272):
    return {263: "hml263", 272: "mm272"}[array.shape[1]]
  raise MotionFileError(
      f"cannot tell what a motion array of shape {array.shape} holds: expected joints [T, 22, 3], "
      "HumanML3D features [T, 263] or 272-dim features [T, 272] (one clip, no batch axis).")


def _load_mean_std(directory: pathlib.Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
  if dim == humanml3d.DIM:
    return humanml3d.load_mean_std(directory)
  for mean_name, std_name in (("Mean272.npy", "Std272.npy"), ("Mean.npy", "Std.npy")):
    mean_path, std_path = directory / mean_name, directory / std_name
    if mean_path.is_file() and std_path.is_file():
      mean, std = np.load(mean_path), np.load(std_path)
      if mean.shape == (dim,) and std.shape == (dim,):
        return mean, std
  raise MotionFileError(f"--mean_std_dir={directory} has no {dim}-dim Mean/Std pair "
                        "(looked for Mean272.npy/Std272.npy and Mean.npy/Std.npy).")


def load_motion(path, representation: str = "auto", mean_std_dir=None, *, unit="auto",
                up: str = "y", mapping=None):
  """Reads a motion file.

  Returns:
    (array, name, fps): the array as stored after denormalisation ([T, 22, 3]
    joints for .bvh), its representation name ("joints", "hml263", "mm272")
    and its native frame rate.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"motion file not found: {path}")
  if path.suffix.lower() == ".bvh":
    if representation not in ("auto", "joints"):
      raise MotionFileError(f"{path} is a BVH file; --representation={representation} is for .npy.")
    joints, fps = bvh.load_joints(path, unit=unit, up=up, mapping=mapping)
    return joints, "joints", fps
  if path.suffix.lower() != ".npy":
    raise MotionFileError(f"{path}: motion files must be .npy or .bvh.")
  array = np.load(path)
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
    mean, std = _load_mean_std(pathlib.Path(mean_std_dir), rep.dim)
    array = humanml3d.denormalize(array, mean, std)
  return array, found, float(rep.fps)


def to_joints(array: np.ndarray, name: str) -> np.ndarray:
  """Joint positions [T, 22, 3] of a loaded motion array."""
  if name == "joints":
    return array
  return np.asarray(representation_lib.get_representation(name).to_joints(array))


def to_bvh(array: np.ndarray, name: str, fps: float, unit: str = "cm",
           order: str = "ZXY") -> bvh.BvhMotion:
  """Our 22-joint BVH: rotations kept where the representation has them, else IK."""
  if name != "joints":
    rep = representation_lib.get_representation(name)
    if rep.has_rotations:
      local_quats, root_pos = rep.to_rotations(array)
      return bvh.motion_from_rotations(np.asarray(local_quats), np.asarray(root_pos), fps=fps,
                                       unit=unit, order=order)
  return bvh.motion_from_joints(to_joints(array, name), fps=fps, unit=unit, order=order)


def define_flags() -> None:
  """The CLI flags (defined only when run as a program, so modules can share names)."""
  flags.DEFINE_string("motion", None, "Input .npy or .bvh file.", required=True)
  flags.DEFINE_string("out", None, "Output .gif, .mp4, .png/.jpg or .bvh.", required=True)
  flags.DEFINE_string("caption", None, "Title drawn above the figure.")
  flags.DEFINE_enum("representation", "auto", ["auto", "hml263", "mm272", "joints"],
                    "What a .npy holds; auto decides by shape.")
  flags.DEFINE_string("mean_std_dir", None, "Folder with the Mean/Std that normalised the features.")
  flags.DEFINE_float("fps", None, "Frame rate (default: the representation's, or the BVH's).")
  flags.DEFINE_integer("num_frames", 5, "Frames in a .png/.jpg filmstrip.")
  flags.DEFINE_string("unit", "auto", "BVH input: auto|m|cm|mm|inch or metres per unit.")
  flags.DEFINE_enum("up", "y", ["y", "z"], "BVH input: the file's up axis.")
  flags.DEFINE_string("mapping", None, "BVH input: JSON file {our joint name: rig joint name}.")
  flags.DEFINE_enum("bvh_unit", "cm", ["cm", "m"], "BVH output: length unit.")
  flags.DEFINE_enum("bvh_order", "ZXY", ["ZXY", "XYZ", "YXZ", "ZYX", "XZY", "YZX"],
                    "BVH output: Euler order of the rotation channels.")


def main(argv):
  del argv
  f = flags.FLAGS
  out = pathlib.Path(f.out)
  suffix = out.suffix.lower()
  if suffix not in (".gif", ".mp4", ".png", ".jpg", ".jpeg", ".bvh"):
    sys.exit(f"render: error: --out={out} must end in .gif, .mp4, .png, .jpg or .bvh.")
  try:
    array, name, fps = load_motion(f.motion, f.representation, f.mean_std_dir, unit=f.unit,
                                   up=f.up, mapping=f.mapping)
    fps = f.fps or fps
    if suffix == ".bvh":
      bvh.write_bvh(out, to_bvh(array, name, fps, f.bvh_unit, f.bvh_order))
    elif suffix in (".gif", ".mp4"):
      render.render_motion(to_joints(array, name), out, f.caption, fps)
    else:
      render.save_image(render.render_frames_image(to_joints(array, name), f.caption,
                                                   f.num_frames), out)
  except (FileNotFoundError, ValueError, RuntimeError) as e:
    sys.exit(f"render: error: {e}")
  print(f"Wrote {out} ({name}, {len(array)} frames at {fps:g} fps)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
