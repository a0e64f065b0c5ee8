r"""Renders (or exports) a motion file as a stick-figure animation, a filmstrip or a BVH.

  python -m llamo_jax.render --motion=FILE --out=OUT [--caption=TEXT]
      [--representation=auto|hml263|mm272|joints] [--mean_std_dir=DIR] [--fps=N]

FILE is a .bvh (any rig, with --unit, --up, --mapping) or a .npy holding joints
[T, 22, 3], HumanML3D 263-dim or 272-dim features (llamo_jax/motion/files.py; `auto`
tells them apart by shape; --mean_std_dir denormalises features).

OUT by suffix: .gif (Pillow) or .mp4 (needs ffmpeg) animation, .png/.jpg
filmstrip of --num_frames frames, or .bvh (our 22-joint hierarchy; 272
features keep their rotations, joints and 263 features go through inverse
kinematics).

FILE, OUT, --mean_std_dir and --mapping may be local or gs:// (any etils.epath path).
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from etils import epath

from llamo_jax.motion import files
from llamo_jax.motion import stick_figure
from llamo_jax.motion.bvh import format as bvh_format


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
  out = epath.Path(f.out)
  suffix = out.suffix.lower()
  if suffix not in (".gif", ".mp4", ".png", ".jpg", ".jpeg", ".bvh"):
    sys.exit(f"render: error: --out={out} must end in .gif, .mp4, .png, .jpg or .bvh.")
  try:
    array, name, fps = files.load_motion(f.motion, f.representation, f.mean_std_dir, unit=f.unit,
                                   up=f.up, mapping=f.mapping)
    fps = f.fps or fps
    if suffix == ".bvh":
      bvh_format.write_bvh(out, files.to_bvh(array, name, fps, f.bvh_unit, f.bvh_order))
    elif suffix in (".gif", ".mp4"):
      stick_figure.render_motion(files.to_joints(array, name), out, f.caption, fps)
    else:
      stick_figure.save_image(stick_figure.render_frames_image(files.to_joints(array, name), f.caption,
                                                               f.num_frames), out)
  except (FileNotFoundError, ValueError, RuntimeError) as e:
    sys.exit(f"render: error: {e}")
  print(f"Wrote {out} ({name}, {len(array)} frames at {fps:g} fps)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
