"""BVH motion files, one module per concern (import the one you need; nothing is re-exported).

  format.py    the file format: `BvhMotion` (hierarchy + channel values), parse, write.
  rig.py       forward kinematics of any BVH rig (global joint rotations and positions).
  retarget.py  a rig onto our 22 joints: joint-name mapping, units, up axis, frame rate.
  export.py    our motions (local rotations or joint positions) as a BVH of our hierarchy.
"""
