"""BVH parse/write, rig forward kinematics, mapping onto our joints, export round trips."""
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import bvh_rigs
from llamo_jax.motion import skeleton
from llamo_jax.motion.bvh import export as bvh_export
from llamo_jax.motion.bvh import format as bvh_format
from llamo_jax.motion.bvh import retarget
from llamo_jax.motion.bvh import rig

NAMES = skeleton.JOINT_NAMES


def _rig_positions(motion: bvh_format.BvhMotion, name: str) -> np.ndarray:
  return rig.global_positions(motion)[:, motion.names.index(name)]


# --------------------------------------------------------------- parsing / FK


TWO_BONES = """HIERARCHY
ROOT Hips {
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT Chest
\t{
\t\tOFFSET 0 10 0
\t\tCHANNELS 3 zrotation xrotation yrotation
\t\tEnd Site
\t\t{
\t\t\tOFFSET 0 0 10
\t\t}
\t}
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 0    0 0 0
1 2 3 90 90 0  0 0 0
"""


def test_parse_tiny_file_with_inline_brace_and_lowercase_channels():
  m = bvh_format.parse_bvh(TWO_BONES.replace("\n", "\r\n"))
  assert m.names == ["Hips", "Chest"]
  assert m.parents.tolist() == [-1, 0]
  assert m.joints[1].channels == ("Zrotation", "Xrotation", "Yrotation")
  np.testing.assert_allclose(m.joints[1].end_site, [0, 0, 10])
  assert m.num_frames == 2 and m.fps == pytest.approx(30.0, rel=1e-5)
  np.testing.assert_allclose(m.values[1], [1, 2, 3, 90, 90, 0, 0, 0, 0])


def test_fk_follows_channel_order():
  """Zrotation Xrotation Yrotation (90, 90, 0) is Rz(90) @ Rx(90), checked by hand."""
  m = bvh_format.parse_bvh(TWO_BONES)
  rot, pos = rig.global_transforms(m)
  np.testing.assert_allclose(pos[:, 0], [[1, 2, 3], [1, 2, 3]])
  # Rx(90) takes (0, 10, 0) to (0, 0, 10); Rz(90) keeps it.
  np.testing.assert_allclose(pos[1, 1], [1, 2, 13], atol=1e-9)
  # End site (0, 0, 10): Rx(90) -> (0, -10, 0), Rz(90) -> (10, 0, 0).
  ends = rig.end_site_positions(m, rot, pos)
  np.testing.assert_allclose(ends[1][1], [11, 2, 13], atol=1e-9)
  # The same numbers in the order X, Z, Y mean Rx(90) @ Rz(90): end site lands elsewhere.
  swapped = TWO_BONES.replace("Zrotation Xrotation Yrotation", "Xrotation Zrotation Yrotation")
  m2 = bvh_format.parse_bvh(swapped)
  rot2, pos2 = rig.global_transforms(m2)
  # Chest: Rz(90) takes (0, 10, 0) to (-10, 0, 0); end site: (0, 0, 10) -> (0, -10, 0).
  np.testing.assert_allclose(pos2[1, 1], [-9, 2, 3], atol=1e-9)
  np.testing.assert_allclose(rig.end_site_positions(m2, rot2, pos2)[1][1], [-9, -8, 3],
                             atol=1e-9)


def test_position_channels_replace_offset():
  text = TWO_BONES.replace("CHANNELS 3 zrotation xrotation yrotation",
                           "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
  text = text.replace("0 0 0    0 0 0", "0 0 0    0 5 0 0 0 0").replace(
      "90 90 0  0 0 0", "0 0 0  0 5 0 0 0 0")
  pos = rig.global_positions(bvh_format.parse_bvh(text))
  np.testing.assert_allclose(pos[:, 1], [[1, 7, 3], [1, 7, 3]])


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated"),
    (lambda t: t.replace("zrotation", "wrotation"), "unknown channel"),
    (lambda t: t.replace("HIERARCHY", "HIERARCHIE"), "HIERARCHY"),
    (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0"), "Frame Time"),
])
def test_parse_errors_are_clear(edit, message):
  with pytest.raises(bvh_format.BvhParseError, match=message):
    bvh_format.parse_bvh(edit(TWO_BONES), source="broken.bvh")


def test_write_then_parse_is_identity(tmp_path):
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu"), num_frames=5))
  m2 = bvh_format.read_bvh(bvh_format.write_bvh(tmp_path / "x.bvh", m))
  assert m2.names == m.names and m2.parents.tolist() == m.parents.tolist()
  np.testing.assert_allclose(m2.values, m.values, atol=1e-6)
  np.testing.assert_allclose(rig.global_positions(m2), rig.global_positions(m), atol=1e-5)


# --------------------------------------------------------------- units, axes, fps


def test_cm_and_m_and_channel_orders_agree():
  spec = bvh_rigs.rig("cmu")
  ref = retarget.to_joints(bvh_format.parse_bvh(bvh_rigs.bvh_text(spec, scale=1.0, order="ZXY")))
  for scale, order in ((100.0, "XYZ"), (1000.0, "YZX"), (100.0, "ZYX")):
    m = bvh_format.parse_bvh(bvh_rigs.bvh_text(spec, scale=scale, order=order))
    np.testing.assert_allclose(retarget.to_joints(m), ref, atol=1e-6)
  # Metres: the thigh (LeftUpLeg -> LeftLeg) is 0.40 m long.
  np.testing.assert_allclose(np.linalg.norm(ref[:, 4] - ref[:, 1], axis=-1), np.hypot(0.4, 0.01))


def test_unit_needs_to_be_explicit_when_size_is_not_a_person():
  # CMU's (cgspeed) BVHs are in 1/0.45 inch: a person is ~34 units tall.
  cmu_unit = 0.0254 / 0.45
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu"), scale=1 / cmu_unit))
  with pytest.raises(retarget.BvhMappingError, match="unit"):
    retarget.to_joints(m)
  ref = retarget.to_joints(bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu"))))
  np.testing.assert_allclose(retarget.to_joints(m, unit=cmu_unit), ref, atol=1e-6)
  inches = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu"), scale=1 / 0.0254))
  np.testing.assert_allclose(retarget.to_joints(inches, unit="inch"), ref, atol=1e-6)


def test_z_up_file_converts_to_y_up():
  spec = bvh_rigs.rig("cmu")
  ref = retarget.to_joints(bvh_format.parse_bvh(bvh_rigs.bvh_text(spec)))
  zup = bvh_format.parse_bvh(bvh_rigs.bvh_text(spec, up="z", scale=100.0))
  np.testing.assert_allclose(retarget.to_joints(zup, up="z"), ref, atol=1e-6)


def test_resample_60_to_20_and_30_to_20():
  x = np.arange(61, dtype=float)[:, None] * np.array([1.0, -2.0])
  y = retarget.resample(x, 60, 20)
  assert y.shape == (21, 2)
  np.testing.assert_allclose(y, x[::3])
  # 30 -> 20: frames at 0, 1.5, 3, ... source frames; a linear signal stays exact.
  y = retarget.resample(x[:31], 30, 20)
  assert y.shape == (21, 2)
  np.testing.assert_allclose(y[:, 0], np.arange(21) * 1.5)
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu"), num_frames=61, fps=60))
  full = retarget.to_joints(m)
  low = retarget.to_joints(m, fps=20)
  assert low.shape == (21, 22, 3)
  np.testing.assert_allclose(low, full[::3])


# --------------------------------------------------------------- mapping


def _check_direct(motion, joints, pairs):
  for ours, rig_name in pairs.items():
    np.testing.assert_allclose(joints[:, NAMES.index(ours)], _rig_positions(motion, rig_name),
                               atol=1e-9, err_msg=f"{ours} <- {rig_name}")


def test_cmu_rig_mapping():
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu")))
  mapping = retarget.map_to_skeleton(m).describe()
  n = NAMES
  assert mapping[n[1]] == "LeftUpLeg" and mapping[n[2]] == "RightUpLeg"
  assert mapping[n[7]] == "LeftFoot" and mapping[n[10]] == "LeftToeBase"
  assert mapping[n[13]] == "LeftShoulder" and mapping[n[16]] == "LeftArm"
  assert mapping[n[18]] == "LeftForeArm" and mapping[n[20]] == "LeftHand"
  assert [mapping[n[i]] for i in (0, 3, 6, 9, 12, 15)] == [
      "Hips", "LowerBack", "Spine", "Spine1", "Neck", "Head"]
  j = retarget.to_joints(m, unit="m")
  _check_direct(m, j, {n[4]: "LeftLeg", n[11]: "RightToeBase", n[21]: "RightHand"})


def test_cmu_zero_length_joints_are_stepped_over():
  """cgspeed CMU: LowerBack sits on Hips, Neck on Spine1, LeftShoulder on Spine1."""
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("cmu_zero")))
  mp = retarget.map_to_skeleton(m)
  desc = mp.describe()
  assert desc[NAMES[12]] == "Neck1"  # Neck has zero length: its only child
  assert desc[NAMES[9]] == "Spine1"
  assert desc[NAMES[3]].endswith("along Hips -> Spine -> Spine1")  # LowerBack left out
  assert desc[NAMES[13]].endswith("along Spine1 -> LeftShoulder -> LeftArm")
  j = retarget.to_joints(m, mapping=mp, unit="m")
  assert np.all(skeleton.bone_lengths(j)[:, 1:] > 0.02)
  lengths = np.linalg.norm(skeleton.TARGET_OFFSETS, axis=-1)
  f = lengths[13] / (lengths[13] + lengths[16])
  np.testing.assert_allclose(j[:, 13], (1 - f) * j[:, 9] + f * j[:, 16], atol=1e-9)


def test_zero_length_bone_that_cannot_be_fixed_is_an_error():
  spec = bvh_rigs.rig("cmu")
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(spec))
  with pytest.raises(retarget.BvhMappingError, match="zero length"):
    # Toe on the ankle: the user mapping forces a zero-length foot with nothing below it.
    retarget.map_to_skeleton(m, {NAMES[7]: "LeftFoot", NAMES[10]: "LeftFoot"})


def test_mixamo_prefix_and_six_channel_joints():
  spec = bvh_rigs.rig("mixamo")
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(spec, scale=100.0))
  mapping = retarget.map_to_skeleton(m).describe()
  assert mapping[NAMES[1]] == "mixamorig:LeftUpLeg"
  assert mapping[NAMES[9]] == "mixamorig:Spine1"  # Mixamo: collars hang off Spine1 here
  j = retarget.to_joints(m)
  # Every joint with 6 channels (positions = offsets) reads the same.
  m6 = bvh_format.parse_bvh(bvh_rigs.bvh_text(spec, scale=100.0, all_positions=True))
  np.testing.assert_allclose(retarget.to_joints(m6), j, atol=1e-6)


@pytest.mark.parametrize("style", ["smpl_snake", "smpl_caps"])
def test_smpl_names(style):
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig(style)))
  mapping = retarget.map_to_skeleton(m).describe()
  want = {"smpl_snake": ["pelvis", "left_hip", "spine1", "left_foot", "left_collar",
                         "left_shoulder", "left_wrist"],
          "smpl_caps": ["Pelvis", "L_Hip", "Spine1", "L_Foot", "L_Collar", "L_Shoulder",
                        "L_Wrist"]}[style]
  assert [mapping[NAMES[i]] for i in (0, 1, 3, 10, 13, 16, 20)] == want
  # Every joint, spine included, is the rig joint of the same name.
  _check_direct(m, retarget.to_joints(m, unit="m"), {NAMES[i]: want_all for i, want_all in
                                                 enumerate(mapping.values())})


def test_long_spine_extra_toes_and_fingers():
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("humanik"), scale=100.0))
  mp = retarget.map_to_skeleton(m)
  desc = mp.describe()
  assert desc[NAMES[9]] == "Spine3"
  assert desc[NAMES[10]] == "LeftToeBase" and desc[NAMES[20]] == "LeftHand"
  j = retarget.to_joints(m)
  pos = rig.global_positions(m) * 0.01
  chain = [m.names.index(x) for x in ("Hips", "Spine", "Spine1", "Spine2", "Spine3")]
  seg = np.linalg.norm(np.diff(pos[:, chain], axis=1), axis=-1)
  lengths = np.linalg.norm(np.asarray(skeleton.TARGET_OFFSETS)[[3, 6, 9]], axis=-1)
  np.testing.assert_allclose(j[:, 9], pos[:, chain[-1]], atol=1e-9)
  for ours, frac in ((3, lengths[0] / lengths.sum()), (6, lengths[:2].sum() / lengths.sum())):
    # The point at `frac` of the arc length of Hips..Spine3.
    target = frac * seg.sum(1)
    d0 = np.linalg.norm(j[:, ours] - pos[:, chain[0]], axis=-1)
    assert np.all(d0 > 0)
    arc = np.zeros(len(j))
    for t in range(len(j)):
      cum = np.concatenate([[0], np.cumsum(seg[t])])
      k = np.searchsorted(cum, target[t]) - 1
      p = pos[t, chain[k]] + (target[t] - cum[k]) / seg[t, k] * (pos[t, chain[k + 1]] -
                                                                 pos[t, chain[k]])
      arc[t] = np.linalg.norm(p - j[t, ours])
    assert arc.max() < 1e-9


def test_toe_from_ankle_end_site():
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("no_toes")))
  assert retarget.map_to_skeleton(m).describe()[NAMES[10]] == "End Site of LeftFoot"
  rot, pos = rig.global_transforms(m)
  ends = rig.end_site_positions(m, rot, pos)
  np.testing.assert_allclose(retarget.to_joints(m, unit="m")[:, skeleton.L_FOOT],
                             ends[m.names.index("LeftFoot")])


def test_missing_joints_error_names_them_and_lists_rig_joints():
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(bvh_rigs.rig("no_left_arm")))
  with pytest.raises(retarget.BvhMappingError) as e:
    retarget.map_to_skeleton(m, source="dance.bvh")
  msg = str(e.value)
  assert "dance.bvh" in msg and NAMES[16] in msg
  assert NAMES[17] not in msg.split("onto the rig")[0]  # the right shoulder was found
  assert "LeftForeArm" in msg and "RightArm" in msg  # rig joints listed
  assert "mapping" in msg


def test_user_mapping_dict_and_json(tmp_path):
  spec = bvh_rigs.rig("cmu")
  odd = {n: f"j{i:02d}" for i, (n, *_) in enumerate(spec)}
  renamed = [(odd[n], p and odd[p], o, e) for n, p, o, e in spec]
  m = bvh_format.parse_bvh(bvh_rigs.bvh_text(renamed))
  with pytest.raises(retarget.BvhMappingError, match=NAMES[0]):
    retarget.map_to_skeleton(m)
  cmu = retarget.map_to_skeleton(bvh_format.parse_bvh(bvh_rigs.bvh_text(spec))).describe()
  user = {ours: odd[rig] for ours, rig in cmu.items()}
  path = tmp_path / "map.json"
  path.write_text(json.dumps(user))
  ref = retarget.to_joints(bvh_format.parse_bvh(bvh_rigs.bvh_text(spec)))
  np.testing.assert_allclose(retarget.to_joints(m, mapping=str(path)), ref)
  np.testing.assert_allclose(retarget.to_joints(m, mapping=user), ref)
  with pytest.raises(retarget.BvhMappingError, match="not in the rig"):
    retarget.map_to_skeleton(m, {NAMES[0]: "Pelvis"})
  with pytest.raises(retarget.BvhMappingError, match="not one of our joints"):
    retarget.map_to_skeleton(m, {"tail": "j00"})


# --------------------------------------------------------------- export round trips


def _random_rotations(num_frames, seed=0):
  rng = np.random.default_rng(seed)
  rv = bvh_rigs.random_angles(num_frames, 22, seed, max_deg=60.0)
  xyzw = Rotation.from_rotvec(rv.reshape(-1, 3)).as_quat().reshape(num_frames, 22, 4)
  quats = np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)
  root = np.cumsum(rng.normal(0, 0.02, (num_frames, 3)), 0) + [0, 0.9, 0]
  return quats, root


@pytest.mark.parametrize("unit, order", [("cm", "ZXY"), ("m", "XYZ")])
def test_export_import_round_trip_from_rotations(tmp_path, unit, order):
  quats, root = _random_rotations(16)
  m = bvh_export.motion_from_rotations(quats, root, fps=30, unit=unit, order=order)
  path = bvh_format.write_bvh(tmp_path / "ours.bvh", m)
  text = path.read_text()
  assert f"CHANNELS 3 {' '.join(a + 'rotation' for a in order)}" in text
  joints, fps = retarget.load_joints(path)
  assert fps == pytest.approx(30.0)
  want = np.asarray(skeleton.forward_kinematics(quats, root, skeleton.TARGET_OFFSETS))
  np.testing.assert_allclose(joints, want, atol=1e-4)
  # Our own names map one to one.
  mapping = retarget.map_to_skeleton(bvh_format.read_bvh(path))
  assert list(mapping.describe().values()) == list(NAMES)


def test_export_from_joints_round_trips_through_ik(tmp_path):
  quats, root = _random_rotations(12, seed=3)
  joints = np.asarray(skeleton.forward_kinematics(quats, root, skeleton.TARGET_OFFSETS))
  joints = joints + np.random.default_rng(0).normal(0, 0.01, joints.shape)  # not FK-exact
  path = bvh_format.write_bvh(tmp_path / "ik.bvh", bvh_export.motion_from_joints(joints, fps=20))
  got, _ = retarget.load_joints(path)
  ik = np.asarray(skeleton.inverse_kinematics(joints))
  want = np.asarray(skeleton.forward_kinematics(ik, joints[:, 0], skeleton.TARGET_OFFSETS))
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_rejects_bad_shapes():
  with pytest.raises(ValueError, match=r"\[T, 22, 4\]"):
    bvh_export.motion_from_rotations(np.zeros((3, 21, 4)), np.zeros((3, 3)), fps=20)
  with pytest.raises(ValueError, match="permutation"):
    bvh_export.motion_from_rotations(np.tile([1.0, 0, 0, 0], (3, 22, 1)), np.zeros((3, 3)), fps=20,
                              order="ZZY")
