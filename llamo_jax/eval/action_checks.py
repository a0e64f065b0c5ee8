"""Do text and motion agree? Checks of generated motions and captions without a learned evaluator.

Text to motion. An expectation is a string "ACTION key=value ...", e.g.

  "walk direction=forward distance=0.5"   moved forward at least 0.5 m
  "jump count=1"                          left the floor at least once
  "wave side=right"                       the right wrist above the head, the left not
  "turn turn_side=left angle=45"          turned left by at least 45 degrees
  "kneel pose=kneel side=left"            the left knee on the floor (low poses: kneel,
                                          crouch, bend; measure.low_pose)
  "stretch lean=right"                    the trunk bent sideways to the right (also twist=)
  "gesture hands=both"                    both forearms oscillate (measure.oscillations)

`llamo_jax.synthetic.measure` reads the quantities back from the joints
[T,22,3]; keys `count`, `distance` and `angle` are lower bounds (angle on its
absolute value), every other key must match exactly. The check suits motions in
the synthetic corpus's vocabulary (its actions and attribute names).

Attribute accuracy. `segment_expectations(attributes)` turns a clip's attribute record (the
synthetic corpus's attributes/ID.json) into one expectation per segment (idle skipped):
recorded counts, sides, directions and seated changes must match; distances and angles must
reach MAGNITUDE_FRACTION of the recorded value. `attribute_accuracy` checks generated motions
against them, each segment on the same fraction of the generated clip as in the recorded one,
and reports accuracy per segment, per clip (every segment passes), per action and per check
(key: which attribute fails).

Motion to text. `named_actions(caption, attributes)` lists, for each action of a
clip's attribute record (idle excepted), whether the caption names it with one
of the words the corpus's caption grammar uses for it; `caption_recall` sums those over clips
(every action, and the first action of each clip).

Length. `length_agreement(generated, reference)` is the fraction of generated motions whose
length lies within LENGTH_TOLERANCE of their reference clip's (the exit head stops in time).
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from llamo_jax.synthetic import measure
from llamo_jax.synthetic import program

_LOWER_BOUNDS = ("count", "distance", "angle")
# Words llamo_jax/synthetic/captions.py uses for each action (stems; tests/eval/test_action_checks.py
# checks that every caption the grammar writes names its actions).
_ACTION_WORDS = {
    "walk": r"walk|stroll|step|sidestep|moves", "jog": r"jog|trot|runs slowly", "run": r"run|sprint",
    "turn": r"turn|rotat", "spin": r"spin|full circle", "jump": r"jump|leap|hop",
    "squat": r"squat|crouch", "wave": r"wav", "raise": r"rais|lift|puts", "punch": r"punch|jab",
    "kick": r"kick", "clap": r"clap", "sit_down": r"sits|seat", "stand_up": r"stands up|gets up|rises",
    # The "wide" action set (llamo_jax/synthetic/program.py ACTION_SETS).
    "crouch": r"crouch|hunker", "kneel": r"kneel|knee", "bend": r"bend|pick|leans forward",
    "stretch": r"stretch|twist|bends sideways|leans to the", "gesture": r"reach|point|swing|shake"}
LENGTH_TOLERANCE = 0.25
_KEYS = ("direction", "turn_side", "side", "seated_change", "pose", "lean", "twist", "hands") + _LOWER_BOUNDS


def parse(expect: str) -> tuple[str, dict[str, str]]:
  """"ACTION k=v ..." -> (action, {k: v}); unknown actions or keys are errors."""
  action, *pairs = expect.split()
  if action not in program.ALL_ACTIONS:
    raise ValueError(f"Expectation {expect!r}: unknown action {action!r}; choose one of "
                     f"{sorted(program.ALL_ACTIONS)}.")
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


MAGNITUDE_FRACTION = 0.5  # distances and angles: at least half the recorded value
_SIDED_COUNTS = ("kick", "punch")


def segment_expectations(attributes: str | dict[str, Any]) -> list[tuple[str, float, float]]:
  """[(expectation, start fraction, end fraction)] for each non-idle segment of an attribute record."""
  if isinstance(attributes, str):
    attributes = json.loads(attributes) if attributes else {}
  total = attributes.get("num_frames") or max((s["end"] for s in attributes.get("segments", [])), default=0)
  out = []
  for seg in attributes.get("segments", []):
    a = seg["action"]
    if a not in program.ALL_ACTIONS or a == "idle":
      continue
    spec = []
    if a in ("walk", "jog", "run"):
      if seg.get("side"):
        spec += [f"turn_side={seg['side']}", f"angle={MAGNITUDE_FRACTION * seg['angle']:g}"]
      else:
        spec += [f"direction={seg['direction']}", f"distance={MAGNITUDE_FRACTION * seg['distance']:g}"]
    elif a in ("turn", "spin"):
      spec += [f"turn_side={seg['side']}", f"angle={MAGNITUDE_FRACTION * seg['angle']:g}"]
    elif a in ("jump", "squat", "clap") + _SIDED_COUNTS:
      if a in _SIDED_COUNTS:
        spec.append(f"side={seg['side']}")
      if seg.get("count"):
        spec.append(f"count={seg['count']}")
    elif a in ("wave", "raise") and seg.get("side"):
      spec.append(f"side={seg['side']}")
    elif a in ("sit_down", "stand_up"):
      spec.append(f"seated_change={'down' if a == 'sit_down' else 'up'}")
    elif a in ("crouch", "bend"):
      spec.append(f"pose={a}")
    elif a == "kneel":
      spec += ["pose=kneel", f"side={seg['side']}"]
    elif a == "stretch":
      spec.append({"overhead": "side=both", "side": f"lean={seg.get('side')}",
                   "twist": f"twist={seg.get('side')}"}[seg.get("variant", "overhead")])
    elif a == "gesture":
      if seg.get("variant") in ("reach", "point"):
        spec.append(f"side={seg['side']}")
      elif seg.get("variant") == "swing" and seg.get("count"):
        spec.append(f"count={seg['count']}")
      elif seg.get("variant") == "shake":
        spec.append("hands=both")
    out.append((" ".join([a] + spec), seg["start"] / total, seg["end"] / total))
  return out


def attribute_accuracy(motions: list[np.ndarray], attributes: list[str | dict[str, Any]], fps: float
                       ) -> dict[str, Any]:
  """Generated joints [T_i,22,3] against their clips' attribute records (module docstring).

  Returns {"segments": accuracy, "clips": accuracy, "num_segments", "num_clips",
  "per_action": {action: {"accuracy", "count"}}, "per_check": {key: {"accuracy", "count"}}}: per_check
  says which part of the expectations fails (e.g. "distance" passed in 40% of the segments that
  check a distance; "side" in 55%). Clips without segments are not counted.
  """
  if len(motions) != len(attributes):
    raise ValueError(f"{len(motions)} motions for {len(attributes)} attribute records.")
  per_action: dict[str, list[bool]] = {}
  per_check: dict[str, list[bool]] = {}
  clips = []
  for joints, attrs in zip(motions, attributes):
    expectations = segment_expectations(attrs)
    if not expectations:
      continue
    t = len(joints)
    results = []
    for expect, lo, hi in expectations:
      a, b = int(round(lo * t)), max(int(round(hi * t)), int(round(lo * t)) + 2)
      window = joints[a:min(b, t)]
      action, spec = parse(expect)
      # A window too short to measure fails every check of its segment.
      failed = {m.split(":")[0] for m in check(window, fps, expect)["failed"]} if len(window) >= 2 else set(spec)
      for key in spec:
        per_check.setdefault(key, []).append(key not in failed)
      per_action.setdefault(action, []).append(not failed)
      results.append(not failed)
    clips.append(all(results))
  segments = [ok for v in per_action.values() for ok in v]
  if not segments:
    return {}

  def summary(groups):
    return {k: {"accuracy": float(np.mean(v)), "count": len(v)} for k, v in sorted(groups.items())}

  return {"segments": float(np.mean(segments)), "clips": float(np.mean(clips)),
          "num_segments": len(segments), "num_clips": len(clips),
          "per_action": summary(per_action), "per_check": summary(per_check)}


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


def caption_recall(named: list[list[tuple[str, bool]]]) -> dict[str, Any]:
  """`named_actions` of many clips -> {"actions": fraction of actions named, "first_action":
  fraction of clips whose first action is named, "num_actions", "num_clips"} ({} if none)."""
  named = [n for n in named if n]
  if not named:
    return {}
  every = [ok for n in named for _, ok in n]
  return {"actions": float(np.mean(every)), "first_action": float(np.mean([n[0][1] for n in named])),
          "num_actions": len(every), "num_clips": len(named)}


def length_agreement(generated: list[int], reference: list[int], tolerance: float = LENGTH_TOLERANCE
                     ) -> dict[str, float]:
  """{"within": fraction of generated lengths within +-tolerance of the reference length,
  "median_ratio": median generated / reference} (lengths in frames, reference > 0)."""
  if len(generated) != len(reference) or not generated:
    raise ValueError(f"{len(generated)} generated lengths for {len(reference)} reference lengths.")
  ratio = np.asarray(generated, np.float64) / np.maximum(np.asarray(reference, np.float64), 1.0)
  return {"within": float(np.mean(np.abs(ratio - 1.0) <= tolerance)), "median_ratio": float(np.median(ratio))}
