r"""Procedural motion-text corpus: physically plausible clips on the 22-joint skeleton.

Each clip strings 1-3 actions (walk/jog/run in any direction or along a curve,
turns, spins, jumps, squats, waves, arm raises, punches, kicks, claps, sitting
down, standing up, idle) into joint rotations plus a root path, so the 263- and
272-dim features are exact; 3-5 captions per clip come from a grammar, and an
attributes record states what was generated.

  python -m data_pipelines.synthetic --out=DIR --num_motions=N --seed=S \
      [--fps=20|30] [--holdout=wave:left,kick:right] [--processes=2] [--overwrite]

Modules: easing (1-D profiles), rig (skeleton constants, two-bone IK),
upper_body (arms/spine/head channel), segment (what an action contributes),
locomotion, actions, footplan (planted feet), compose (segments -> clip),
program (random action sequences), captions (grammar + POS tags), corpus
(folder writer, splits, stats), measure (reads attributes back from any joints,
to check a motion against its prompt).
"""
