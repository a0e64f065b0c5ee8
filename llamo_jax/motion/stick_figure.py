"""Stick-figure pictures and animations of our 22-joint motion (matplotlib, Agg).

`render_motion` writes one clip as a .gif (Pillow) or .mp4 (ffmpeg),
`render_grid` several clips side by side in one animation, and
`render_frames_image` a filmstrip of a few frames as an RGB array (for
TensorBoard and README pictures).

Drawing: the kinematic chains of `skeleton.KINEMATIC_CHAINS` in one colour
per limb (right side warm, left side cool, spine grey), a floor grid at the
clip's lowest joint height, the root (pelvis) trajectory on the floor (whole
path faint, the part travelled so far dark), the caption as a wrapped title.
The camera is fixed per clip and fits every frame, with equal scale on all
axes. Joints are Y-up metres (HumanML3D); matplotlib's 3D axes are Z-up, so
(x, y, z) is drawn at (x, -z, y), a proper rotation (no mirroring).

Figures are built on an explicit Agg canvas, so importing this module does not
change the pyplot backend of the caller.
"""
from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Sequence

from etils import epath
import numpy as np
from matplotlib import animation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from llamo_jax.core import paths
from llamo_jax.motion import skeleton

# One colour per chain of skeleton.KINEMATIC_CHAINS: right leg, left leg,
# spine + head, right arm, left arm.
CHAIN_COLORS = ("#d62728", "#1f77b4", "#4d4d4d", "#ff7f0e", "#17becf")
_TITLE_PT = 8


def _title_inches(captions: Sequence[str | None], wrap: int) -> float:
  """Height (inches) the wrapped captions need above their axes."""
  lines = max((len(textwrap.wrap(c, wrap)) for c in captions if c), default=0)
  return lines * _TITLE_PT * 1.25 / 72 + (0.1 if lines else 0.0)


def _check_joints(joints: np.ndarray, what: str = "joints") -> np.ndarray:
  joints = np.asarray(joints, np.float64)
  if joints.ndim != 3 or joints.shape[1:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f"{what} must be [T, {skeleton.NUM_JOINTS}, 3] joint positions, "
                     f"got shape {joints.shape}.")
  if joints.shape[0] < 1:
    raise ValueError(f"{what} has no frames.")
  if not np.all(np.isfinite(joints)):
    raise ValueError(f"{what} contains NaN or inf.")
  return joints


def _to_plot(joints: np.ndarray) -> np.ndarray:
  """Y-up (x, y, z) -> matplotlib Z-up (x, -z, y)."""
  return np.stack([joints[..., 0], -joints[..., 2], joints[..., 1]], axis=-1)


class _Panel:
  """One 3D axes showing one clip; `show(t)` poses it at frame t."""

  def __init__(self, fig: Figure, position, joints: np.ndarray, caption: str | None,
               wrap: int, elev: float = 20.0, azim: float = -60.0):
    self.points = _to_plot(joints)  # [T, J, 3]
    self.ax = ax = fig.add_subplot(*position, projection="3d")
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()
    if caption:
      ax.set_title(textwrap.fill(caption, wrap), fontsize=_TITLE_PT)
    lo, hi = self.points.reshape(-1, 3).min(0), self.points.reshape(-1, 3).max(0)
    floor = lo[2]
    # Equal scale: the horizontal box is square and covers all frames plus a margin.
    centre = (lo[:2] + hi[:2]) / 2
    half = max(float(np.max(hi[:2] - lo[:2])) / 2, 0.5) + 0.2
    top = max(float(hi[2] - floor), 1.0) + 0.1
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(floor, floor + top)
    # zoom: the default leaves wide empty margins around a 3D box.
    ax.set_box_aspect((2 * half, 2 * half, top), zoom=1.4)
    self._floor_grid(centre, half, floor)
    root = self.points[:, skeleton.PELVIS]
    ax.plot(root[:, 0], root[:, 1], np.full(len(root), floor), color="#b0b0b0", lw=0.8)
    (self.travelled,) = ax.plot([], [], [], color="#555555", lw=1.2)
    self.floor = floor
    self.lines = [ax.plot([], [], [], color=c, lw=2.0, solid_capstyle="round")[0]
                  for c in CHAIN_COLORS[:len(skeleton.KINEMATIC_CHAINS)]]

  def _floor_grid(self, centre, half, floor):
    step = 0.5 if half <= 3.0 else 1.0
    ticks = np.arange(np.floor((centre - half) / step).min() * step,
                      np.ceil((centre + half) / step).max() * step + 1e-9, step)
    x0, x1 = centre[0] - half, centre[0] + half
    y0, y1 = centre[1] - half, centre[1] + half
    for v in ticks:
      if x0 <= v <= x1:
        self.ax.plot([v, v], [y0, y1], [floor, floor], color="#dddddd", lw=0.6)
      if y0 <= v <= y1:
        self.ax.plot([x0, x1], [v, v], [floor, floor], color="#dddddd", lw=0.6)

  def show(self, t: int):
    t = min(t, len(self.points) - 1)  # shorter clips hold their last frame
    pose = self.points[t]
    for line, chain in zip(self.lines, skeleton.KINEMATIC_CHAINS):
      p = pose[list(chain)]
      line.set_data_3d(p[:, 0], p[:, 1], p[:, 2])
    root = self.points[:t + 1, skeleton.PELVIS]
    self.travelled.set_data_3d(root[:, 0], root[:, 1], np.full(len(root), self.floor))


def _writer(out_path: epath.Path, fps: float) -> animation.AbstractMovieWriter:
  suffix = out_path.suffix.lower()
  if suffix == ".gif":
    return animation.PillowWriter(fps=fps)
  if suffix == ".mp4":
    if not animation.FFMpegWriter.isAvailable():
      raise RuntimeError(f"cannot write {out_path}: .mp4 needs the ffmpeg program, which is not "
                         "on PATH. Write a .gif instead, or install ffmpeg (e.g. `apt-get install "
                         "ffmpeg`).")
    return animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
  raise ValueError(f"cannot write {out_path}: the animation format must be .gif or .mp4.")


def _animate(fig: Figure, panels: Sequence[_Panel], num_frames: int, out_path: paths.PathLike, fps: float,
             dpi: float) -> pathlib.Path | epath.Path:
  out_path = epath.Path(out_path)
  if not fps > 0:
    raise ValueError(f"fps must be > 0, got {fps}.")
  writer = _writer(out_path, fps)
  with paths.staged_file(out_path) as local:  # matplotlib's writers need a local file
    with writer.saving(fig, str(local), dpi):
      for t in range(num_frames):
        for panel in panels:
          panel.show(t)
        writer.grab_frame()
  return paths.as_path(out_path)


def render_motion(joints: np.ndarray, out_path: paths.PathLike,
                  caption: str | None = None, fps: float = 20, *, size: float = 4.0,
                  dpi: float = 80) -> pathlib.Path | epath.Path:
  """Writes an animation of joints [T, 22, 3] (Y-up metres) to `out_path` (.gif or .mp4).

  One animation frame per motion frame at `fps`. (A GIF encoder may merge
  consecutive identical frames, e.g. of a motionless clip.)
  """
  joints = _check_joints(joints)
  fig = Figure(figsize=(size, size))
  FigureCanvasAgg(fig)
  wrap = int(12 * size)
  panel = _Panel(fig, (1, 1, 1), joints, caption, wrap=wrap)
  fig.subplots_adjust(0, 0, 1, 1 - _title_inches([caption], wrap) / size)
  return _animate(fig, [panel], len(joints), out_path, fps, dpi)


def render_grid(joints_list: Sequence[np.ndarray], out_path: paths.PathLike,
                captions: Sequence[str | None] | None = None, fps: float = 20, *,
                cols: int | None = None, size: float = 3.0, dpi: float = 80) -> pathlib.Path | epath.Path:
  """Writes several clips (each [T_i, 22, 3]) side by side in one .gif/.mp4.

  The animation lasts max(T_i) frames; shorter clips hold their last pose.
  `cols` defaults to ceil(sqrt(n)).
  """
  if not joints_list:
    raise ValueError("render_grid needs at least one clip.")
  clips = [_check_joints(j, f"clip {i}") for i, j in enumerate(joints_list)]
  captions = list(captions) if captions is not None else [None] * len(clips)
  if len(captions) != len(clips):
    raise ValueError(f"got {len(clips)} clips but {len(captions)} captions.")
  cols = cols or int(np.ceil(np.sqrt(len(clips))))
  rows = int(np.ceil(len(clips) / cols))
  wrap = int(12 * size)
  title = _title_inches(captions, wrap)
  fig = Figure(figsize=(size * cols, (size + title) * rows))
  FigureCanvasAgg(fig)
  panels = [_Panel(fig, (rows, cols, i + 1), j, c, wrap=wrap)
            for i, (j, c) in enumerate(zip(clips, captions))]
  fig.subplots_adjust(0, 0, 1, 1 - title / ((size + title) * rows), wspace=0.0,
                      hspace=title / size)
  return _animate(fig, panels, max(len(c) for c in clips), out_path, fps, dpi)


def render_frames_image(joints: np.ndarray, caption: str | None = None, num_frames: int = 5, *,
                        size: float = 2.0, dpi: float = 80) -> np.ndarray:
  """A filmstrip of `num_frames` evenly spaced frames of joints [T, 22, 3] -> uint8 [H, W, 3].

  Every panel uses the same camera (fitted to the whole clip), so the figure
  moves across the strip as it moves in the clip.
  """
  joints = _check_joints(joints)
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
  num_frames = min(num_frames, len(joints))
  frames = np.round(np.linspace(0, len(joints) - 1, num_frames)).astype(int)
  top = 0.82 if caption else 0.95
  fig = Figure(figsize=(size * num_frames, size / top))
  canvas = FigureCanvasAgg(fig)
  for k, t in enumerate(frames):
    panel = _Panel(fig, (1, num_frames, k + 1), joints, None, wrap=1)
    panel.show(int(t))
    panel.ax.set_title(f"frame {t}", fontsize=7, pad=-2)
  if caption:
    fig.suptitle(textwrap.fill(caption, int(14 * size * num_frames)), fontsize=9)
  fig.subplots_adjust(0, 0, 1, top, wspace=0.0)
  fig.set_dpi(dpi)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def stacked_frames_image(clips: Sequence[np.ndarray], captions: Sequence[str | None],
                         num_frames: int = 5) -> np.ndarray:
  """Filmstrips of several clips (e.g. input and reconstruction), one row each -> uint8 [H, W, 3]."""
  if len(clips) != len(captions):
    raise ValueError(f"stacked_frames_image: {len(clips)} clips but {len(captions)} captions.")
  return np.concatenate([render_frames_image(j, c, num_frames) for j, c in zip(clips, captions)], axis=0)


def save_image(image: np.ndarray, out_path: paths.PathLike) -> pathlib.Path | epath.Path:
  """Writes an RGB uint8 [H, W, 3] image (e.g. a filmstrip) as PNG/JPEG by its suffix."""
  out_path = epath.Path(out_path)
  with paths.staged_file(out_path) as local:  # PIL picks the format by the local name's suffix
    Image.fromarray(np.asarray(image, np.uint8)).save(str(local))
  return paths.as_path(out_path)
