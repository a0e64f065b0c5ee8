"""Stick-figure rendering: GIF frame counts, filmstrip pictures, clear errors."""
import numpy as np
import pytest
from matplotlib import animation
from PIL import Image

from llamo_jax.motion import stick_figure
from llamo_jax.motion import skeleton


def _walk(num_frames: int = 6, speed: float = 0.05) -> np.ndarray:
  """Rest pose (T-pose from TARGET_OFFSETS) sliding along +Z with swinging arms."""
  rest = np.zeros((skeleton.NUM_JOINTS, 3))
  for j in range(1, skeleton.NUM_JOINTS):
    rest[j] = rest[skeleton.PARENTS[j]] + skeleton.TARGET_OFFSETS[j]
  rest[:, 1] -= rest[:, 1].min()
  joints = np.repeat(rest[None], num_frames, axis=0)
  t = np.arange(num_frames)
  joints[:, :, 2] += speed * t[:, None]
  joints[:, skeleton.L_WRIST, 1] += 0.1 * np.sin(t)  # left wrist moves: no two frames alike
  return joints


def test_render_motion_gif_has_one_frame_per_motion_frame(tmp_path):
  out = stick_figure.render_motion(_walk(5), tmp_path / "a.gif", caption="a person walks forward",
                                   fps=20, size=2.0, dpi=40)
  assert out.stat().st_size > 0
  with Image.open(out) as gif:
    assert gif.n_frames == 5
    assert gif.info["duration"] == 50  # ms at 20 fps
    first = np.asarray(gif.convert("RGB"))
    gif.seek(4)
    last = np.asarray(gif.convert("RGB"))
  assert first.shape == (80, 80, 3)
  assert not np.array_equal(first, last)  # the figure moved


def test_render_grid_lasts_as_long_as_the_longest_clip(tmp_path):
  out = stick_figure.render_grid([_walk(3), _walk(5), _walk(2)], tmp_path / "grid.gif",
                                 ["one", "two", None], fps=10, size=1.5, dpi=40)
  with Image.open(out) as gif:
    assert gif.n_frames == 5
    assert gif.size[0] == 2 * 60  # 3 clips -> 2 x 2 panels
    assert gif.size[1] > 2 * 60  # plus room for the captions


def test_filmstrip_image(tmp_path):
  img = stick_figure.render_frames_image(_walk(8), caption="a person walks", num_frames=4,
                                         size=1.5, dpi=40)
  assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
  assert img.shape[1] == 4 * 60
  # Not blank: the legs are drawn in their colours (left blue #1f77b4, right red #d62728).
  rgb = img.astype(int)
  assert ((rgb[..., 2] - rgb[..., 0] > 60) & (rgb[..., 2] > 120)).sum() > 10
  assert ((rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 1] < 120)).sum() > 10
  path = stick_figure.save_image(img, tmp_path / "strip.png")
  with Image.open(path) as png:
    assert png.size == (img.shape[1], img.shape[0])


def test_mp4_without_ffmpeg_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setattr(animation.FFMpegWriter, "isAvailable", classmethod(lambda cls: False))
  with pytest.raises(RuntimeError, match="ffmpeg"):
    stick_figure.render_motion(_walk(2), tmp_path / "a.mp4")


@pytest.mark.parametrize("joints, message", [
    (np.zeros((4, 21, 3)), r"\[T, 22, 3\]"),
    (np.full((4, 22, 3), np.nan), "NaN"),
])
def test_bad_input_is_rejected(tmp_path, joints, message):
  with pytest.raises(ValueError, match=message):
    stick_figure.render_motion(joints, tmp_path / "a.gif")


def test_unknown_format(tmp_path):
  with pytest.raises(ValueError, match=r"\.gif or \.mp4"):
    stick_figure.render_motion(_walk(2), tmp_path / "a.avi")
