"""Caption grammar: HumanML3D line format, POS lexicon, paraphrases that stay true to the attributes."""
import re

import numpy as np
import pytest

from llamo_jax.synthetic import captions


def test_line_round_trips():
  line = captions.humanml3d_line("a person walks forward, then waves with the left hand.")
  assert line == ("a person walks forward, then waves with the left hand.#a/DET person/NOUN "
                  "walk/VERB forward/ADV then/ADV wave/VERB with/ADP the/DET left/ADJ hand/NOUN"
                  "#0.0#0.0")
  caption, tokens, start, end = captions.parse_line(line)
  assert caption.startswith("a person") and tokens[2] == ("walk", "VERB") and start == end == 0.0
  with pytest.raises(ValueError, match="4 '#'-separated"):
    captions.parse_line("no tags here")


def test_unknown_word_is_a_clear_error():
  with pytest.raises(KeyError, match="'moonwalks' is not in the synthetic lexicon"):
    captions.tag("a person moonwalks.")


def test_numbers_are_tagged_num():
  assert captions.tag("turns 90 degrees three times") == (
      "turn/VERB 90/NUM degree/NOUN three/NUM time/NOUN")


SIDE_WORDS = {"left": ("left", "counterclockwise"), "right": ("right", "clockwise")}


def _says(caption: str, word: str) -> bool:
  return re.search(rf"\b{word}\b", caption) is not None


@pytest.mark.parametrize("record,must", [
    ({"action": "wave", "side": "left", "count": 3}, ["left"]),
    ({"action": "kick", "side": "right", "count": 2}, ["right"]),
    ({"action": "punch", "side": "left", "count": 1}, ["left"]),
    ({"action": "walk", "direction": "backward", "speed": 0.8, "distance": 2.0}, [("back", "backs", "backing", "backward",
                                                                                  "backwards", "reverse")]),
    ({"action": "walk", "direction": "left", "speed": 0.6, "distance": 2.0}, ["left"]),
    ({"action": "turn", "side": "right", "angle": 90.0}, ["right", ("turn", "turns", "turning", "rotates",
                                                                   "rotating", "pivots", "faces", "facing")]),
    ({"action": "turn", "side": "left", "angle": 90.0}, ["left", ("turn", "turns", "turning", "rotates",
                                                                  "rotating", "pivots", "faces", "facing")]),
    ({"action": "raise", "side": "both"}, [("both",)]),
])
def test_paraphrases_keep_the_facts(record, must):
  """Every paraphrase says the facts (a side by its words or its rotation sense), never the opposite."""
  rng = np.random.default_rng(0)
  caps = captions.describe([record], rng, 12)
  assert len(caps) >= 8 and len(set(caps)) == len(caps)
  for c in caps:
    for alternatives in must:
      if alternatives in SIDE_WORDS:
        opposite = "right" if alternatives == "left" else "left"
        assert any(_says(c, w) for w in SIDE_WORDS[alternatives]), c
        assert not any(_says(c, w) for w in SIDE_WORDS[opposite]), c
      else:
        assert any(_says(c, w) for w in alternatives), c
    captions.tag(c)


def test_annotator_variations_stay_taggable_and_consistent():
  """Progressive, possessive and article-free forms appear, agree with the subject, and tag."""
  recs = [{"action": "wave", "side": "left", "count": 2}, {"action": "kick", "side": "right", "count": 1}]
  caps = captions.describe(recs, np.random.default_rng(0), 200)
  assert any(" is waving" in c for c in caps)
  assert any("his left" in c or "her left" in c or "their left" in c for c in caps)
  assert any("with left hand" in c or "with left arm" in c for c in caps)
  for c in caps:
    captions.tag(c)
    if "his " in c:
      assert c.startswith(("a man", "the man")), c
    if "her " in c:
      assert c.startswith(("a woman", "the woman")), c


def test_sequences_keep_their_order():
  recs = [{"action": "walk", "direction": "forward", "speed": 1.2, "distance": 3.0},
          {"action": "turn", "side": "left", "angle": 90.0},
          {"action": "wave", "side": "right", "count": 2}]
  for c in captions.describe(recs, np.random.default_rng(1), 5):
    turn_at = c.find("turn") if "turn" in c else c.find("rotates")
    wave_at = max(c.find("wave"), c.find("waving"))
    assert 0 < turn_at < wave_at, c
