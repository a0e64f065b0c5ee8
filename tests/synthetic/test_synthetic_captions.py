"""Caption grammar: HumanML3D line format, POS lexicon, paraphrases that stay true to the attributes."""
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


@pytest.mark.parametrize("record,must", [
    ({"action": "wave", "side": "left", "count": 3}, ["left"]),
    ({"action": "kick", "side": "right", "count": 2}, ["right"]),
    ({"action": "punch", "side": "left", "count": 1}, ["left"]),
    ({"action": "walk", "direction": "backward", "speed": 0.8, "distance": 2.0}, ["back"]),
    ({"action": "walk", "direction": "left", "speed": 0.6, "distance": 2.0}, ["left"]),
    ({"action": "turn", "side": "right", "angle": 90.0}, ["right", "turn"]),
    ({"action": "raise", "side": "both"}, ["both"]),
])
def test_paraphrases_keep_the_facts(record, must):
  rng = np.random.default_rng(0)
  caps = captions.describe([record], rng, 5)
  assert len(caps) >= 3 and len(set(caps)) == len(caps)
  for c in caps:
    assert all(word in c for word in must), c
    other = {"left": "right", "right": "left"}
    for side, opposite in other.items():
      if side in must:
        assert opposite not in c, c
    captions.tag(c)


def test_sequences_keep_their_order():
  recs = [{"action": "walk", "direction": "forward", "speed": 1.2, "distance": 3.0},
          {"action": "turn", "side": "left", "angle": 90.0},
          {"action": "wave", "side": "right", "count": 2}]
  for c in captions.describe(recs, np.random.default_rng(1), 5):
    turn_at = c.find("turn") if "turn" in c else c.find("rotates")
    wave_at = max(c.find("wave"), c.find("waving"))
    assert 0 < turn_at < wave_at, c
