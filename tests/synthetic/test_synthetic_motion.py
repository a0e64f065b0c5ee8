"""Physical plausibility of generated clips: bones, floor, feet, smoothness, and attribute truth."""
import math

import numpy as np
import pytest

from llamo_jax.synthetic import actions
from llamo_jax.synthetic import compose
from llamo_jax.synthetic import locomotion
from llamo_jax.synthetic.measure import facing as _facing
from llamo_jax.synthetic import program
from llamo_jax.motion import skeleton

FPS = 20
FEET = (7, 8, 10, 11)  # ankles and toes
CONTACT_HEIGHT = 0.05


def _bone_lengths(joints):
  parents = np.asarray(skeleton.PARENTS)
  return np.linalg.norm(joints[:, 1:] - joints[:, parents[1:]], axis=-1)


def _skating(joints, fps):
  """Per foot joint: fraction of in-contact frame steps (foot < 5 cm at both ends) sliding > 0.1 m/s."""
  low = joints[:, FEET, 1] < CONTACT_HEIGHT
  contact = low[1:] & low[:-1]
  speed = np.linalg.norm(np.diff(joints[:, FEET][..., [0, 2]], axis=0), axis=-1) * fps
  return (contact & (speed > 0.1)).sum(0) / np.maximum(contact.sum(0), 1), speed, contact


def _mean_jerk(joints, fps):
  jerk = np.diff(joints, n=3, axis=0) * fps ** 3
  return float(np.linalg.norm(jerk, axis=-1).mean())


@pytest.fixture(scope="module")
def random_clips():
  rng = np.random.default_rng(123)
  return [compose.compose(program.sample_segments(rng, FPS, 40, 196), FPS) for _ in range(12)]


def test_bones_keep_their_length(random_clips):
  for clip in random_clips:
    lengths = _bone_lengths(clip.joints)
    assert np.abs(lengths - lengths[0]).max() < 1e-5
    np.testing.assert_allclose(lengths[0], np.linalg.norm(skeleton.TARGET_OFFSETS[1:], axis=-1),
                               atol=1e-5)


def test_feet_on_not_below_the_floor(random_clips):
  for clip in random_clips:
    j = clip.joints
    assert j[..., 1].min() >= -1e-3
    assert np.isfinite(j).all()
    # Planted feet touch the floor (toes within 1 cm), not float above it.
    toes = j[:, [10, 11], 1]
    assert toes[clip.planted].max() < 0.01, toes[clip.planted].max()


@pytest.mark.parametrize("gait,direction,speed", [
    ("walk", "forward", 1.3), ("walk", "backward", 0.8), ("walk", "left", 0.6), ("jog", "forward", 2.2)])
def test_no_foot_skating_in_locomotion(gait, direction, speed):
  clip = compose.compose([locomotion.locomotion(FPS, gait, direction, speed, 4.0)], FPS)
  ratio, speed_ms, contact = _skating(clip.joints, FPS)
  # Planted feet do not move at all; a 5 cm contact band also catches lift-off and
  # touch-down frames, where the released clip slides 20-40% of the time.
  planted = clip.planted[1:] & clip.planted[:-1]
  assert speed_ms[:, [0, 1]][planted].max() < 1e-6
  assert speed_ms[:, [2, 3]][planted].max() < 1e-6
  assert ratio.max() < 0.15, ratio


def test_jerk_is_human_scale(random_clips, humanml3d_clip):
  real = np.load(humanml3d_clip / "new_joints_012314.npy")
  real_jerk = _mean_jerk(real, 20)
  ours = np.mean([_mean_jerk(c.joints, FPS) for c in random_clips])
  assert real_jerk / 10 < ours < real_jerk * 10, (ours, real_jerk)


@pytest.mark.parametrize("direction,axis,sign", [("forward", 2, 1), ("backward", 2, -1),
                                                 ("left", 0, 1), ("right", 0, -1)])
def test_walking_travels_the_stated_distance(direction, axis, sign):
  speed, duration = 1.0 if direction == "forward" else 0.6, 4.0
  clip = compose.compose([locomotion.locomotion(FPS, "walk", direction, speed, duration)], FPS)
  rec = clip.segments[0]
  moved = clip.joints[-1, 0] - clip.joints[0, 0]
  assert sign * moved[axis] == pytest.approx(rec["distance"], rel=0.02)
  assert abs(moved[2 - axis]) < 0.05 * rec["distance"]
  # Ramps up and down take ~0.7 s each; the rest is at full speed.
  assert speed * (duration - 1.2) < rec["distance"] < speed * duration
  assert abs(_facing(clip.joints)[-1]) < math.radians(5)  # still facing +Z


@pytest.mark.parametrize("degrees", [90.0, -90.0, 180.0, 45.0])
def test_turning_turns_the_stated_angle(degrees):
  clip = compose.compose([actions.idle(FPS, 0.5, np.random.default_rng(0)),
                          locomotion.turn_in_place(FPS, math.radians(degrees))], FPS)
  rec = clip.segments[1]
  facing = _facing(clip.joints)
  turned = math.degrees(facing[rec["end"] - 1] - facing[rec["start"]])
  assert rec["angle"] == pytest.approx(abs(degrees), abs=0.5)
  assert rec["side"] == ("left" if degrees > 0 else "right")
  assert turned == pytest.approx(degrees, abs=8.0)
  assert np.linalg.norm(clip.joints[-1, 0, [0, 2]] - clip.joints[0, 0, [0, 2]]) < 0.1


def test_curved_walk_turns_while_travelling():
  clip = compose.compose([locomotion.locomotion(FPS, "walk", "forward", 1.2, 5.0,
                                                turn=math.radians(-90))], FPS)
  facing = _facing(clip.joints)
  assert math.degrees(facing[-1] - facing[0]) == pytest.approx(-90, abs=8)
  assert clip.segments[0]["side"] == "right"
  end = clip.joints[-1, 0]
  assert end[2] > 1.0 and end[0] < -1.0  # ahead, then off to the body's right (-X)


def test_jumps_leave_the_ground_count_times():
  clip = compose.compose([actions.jump(FPS, 3, 0.0, 0.3)], FPS)
  airborne = clip.joints[:, [10, 11], 1].min(axis=1) > 0.05
  takeoffs = np.sum(airborne[1:] & ~airborne[:-1])
  assert takeoffs == 3
  assert clip.joints[:, 0, 1].max() - clip.joints[0, 0, 1] > 0.15


def test_frame_rate_changes_sampling_not_motion():
  c20 = compose.compose([locomotion.locomotion(20, "walk", "forward", 1.2, 3.0)], 20)
  c30 = compose.compose([locomotion.locomotion(30, "walk", "forward", 1.2, 3.0)], 30)
  assert c30.joints.shape[0] == 90 and c20.joints.shape[0] == 60
  assert c30.segments[0]["distance"] == pytest.approx(c20.segments[0]["distance"], rel=0.03)


def test_segments_tile_the_clip(random_clips):
  for clip in random_clips:
    spans = [(s["start"], s["end"]) for s in clip.segments]
    assert spans[0][0] == 0 and spans[-1][1] == clip.joints.shape[0]
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert 40 <= clip.joints.shape[0] <= 196
