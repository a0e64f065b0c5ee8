"""Do text and motion agree? Checks of generated motions and captions without a learned evaluator.

Text to motion. An expectation is a string "ACTION key=value ...", e.g.

  "walk direction=forward distance=0.5"   moved forward at least 0.5 m
  "jump count=1"                          left the floor at least once
  "wave side=right"                       the right wrist above the head, the left not
  "turn turn_side=left angle=45"          turned left by at least 45 degrees

`llamo_jax.synthetic.measure` reads the quantities back from the joints
[T,22,3]; keys `count`, `distance` and `angle` are lower bounds (angle on its
absolute value), every other key must match exactly. The check suits motions in
the synthetic corpus's vocabulary (its actions and attribute names).

Motion to text. `named_actions(caption, attributes)` lists, for each action of a
clip's attribute record (idle excepted), whether the caption names it with one
of the words the corpus's caption grammar uses for it.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from llamo_jax.synthetic import measure
from llamo_jax.synthetic import program

_LOWER_BOUNDS = ("count", "distance", "angle")
# Words llamo_jax/synthetic/captions.py uses for each action (stems).
_ACTION_WORDS = {
    "walk": r"walk|stroll|step|sidestep|moves", "jog": r"jog|trot|runs slowly", "run": r"run|sprint",
    "turn": r"turn|rotat", "spin": r"spin|full circle", "jump": r"jump|leap|hop",
    "squat": r"squat|crouch", "wave": r"wav", "raise": r"rais|lift|puts", "punch": r"punch|jab",
    "kick": r"kick", "clap": r"clap", "sit_down": r"sits|seat", "stand_up": r"stands up|gets up|rises"}
_KEYS = ("direction", "turn_side", "side", "seated_change") + _LOWER_BOUNDS


def parse(expect: str) -> tuple[str, dict[str, str]]:
  """"ACTION k=v ..." -> (action, {k: v}); unknown actions or keys are errors."""
  action, *pairs = expect.split()
  if action not in program.ACTION_WEIGHTS:
    raise ValueError(f"Expectation {expect!r}: unknown action {action!r}; choose one of "
                     f"{sorted(program.ACTION_WEIGHTS)}.")
  spec = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or key not in _KEYS:
      raise ValueError(f"Expectation {expect!r}: {pair!r} is not KEY=VALUE with KEY in {_KEYS}.")
    if key in _LOWER_BOUNDS:
      float(value)  # a bad number fails here, naming itself
    spec[key] = value
  return action, spec


def check_expectations(prompts: list[str], expect: list[str]) -> None:
  """Fails fast on a config whose expectations are malformed or not one per prompt (or none)."""
  if expect and len(expect) != len(prompts):
    raise ValueError(f"config.sampling.expect has {len(expect)} entries for {len(prompts)} prompts; "
                     "give one per prompt or none.")
  for e in expect:
    parse(e)


def check(joints: np.ndarray, fps: float, expect: str) -> dict[str, Any]:
  """Measures joints [T,22,3] for the expectation's action -> {"ok", "failed", "measured"}."""
  action, spec = parse(expect)
  got = measure.measure(np.asarray(joints, np.float64), fps, action)
  failed = []
  for key, want in spec.items():
    value = got.get(key)
    if key in _LOWER_BOUNDS:
      ok = value is not None and abs(float(value)) >= float(want)
    else:
      ok = value == want
    if not ok:
      failed.append(f"{key}: want {'>= ' if key in _LOWER_BOUNDS else ''}{want}, got {value}")
  return {"ok": not failed, "failed": failed, "measured": got}


def named_actions(caption: str, attributes: str | dict[str, Any]) -> list[tuple[str, bool]]:
  """[(action, named?)] for the clip's segments in order (idle skipped, repeats once).

  Clips without segment records (corpora other than the synthetic one) give [].
  """
  if isinstance(attributes, str):
    attributes = json.loads(attributes) if attributes else {}
  segments = attributes.get("segments", [])
  actions = dict.fromkeys(s["action"] for s in segments if s["action"] in _ACTION_WORDS)
  text = caption.lower()
  return [(a, re.search(rf"\b({_ACTION_WORDS[a]})", text) is not None) for a in actions]
