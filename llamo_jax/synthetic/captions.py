"""Captions: a small grammar with synonyms and paraphrases, tagged in HumanML3D's text format.

`describe(records, rng, count)` writes `count` distinct captions of a clip from
its segment records (attributes); `humanml3d_line(caption)` gives the line
HumanML3D stores: `caption#word/POS word/POS ...#0.0#0.0` (lemmas, universal
POS tags, punctuation dropped, 0.0#0.0 = the whole clip). Tags come from the
lexicon below; a word missing from it is a bug in the grammar and raises.
"""
import re

import numpy as np

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
                8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}
TIMES = {1: "once", 2: "twice"}

# word -> (lemma, universal POS)
_LEX: dict[str, tuple[str, str]] = {}


def _add(pos: str, words: str, lemma: str | None = None) -> None:
  for w in words.split():
    _LEX[w] = (lemma or w, pos)


def _verb(lemma: str, third: str, ing: str) -> None:
  _LEX[lemma] = (lemma, "VERB")
  _LEX[third] = (lemma, "VERB")
  _LEX[ing] = (lemma, "VERB")


_add("DET", "a an the both each")
_add("NOUN", "person man woman figure human someone somebody")
_LEX["someone"] = ("someone", "PRON")
_LEX["somebody"] = ("somebody", "PRON")
_add("PRON", "they he she it that")
_add("INTJ", "hello")
_LEX["his"] = ("his", "PRON")
_LEX["her"] = ("her", "PRON")
_add("NOUN", "hand arm leg foot fist head chair seat step circle arc curve pace place spot "
     "air squat jump kick punch turn spin wave time")
for sg, pl in (("hand", "hands"), ("arm", "arms"), ("leg", "legs"), ("step", "steps"),
               ("meter", "meters"), ("degree", "degrees"), ("squat", "squats"), ("jump", "jumps"),
               ("kick", "kicks"), ("punch", "punches"), ("time", "times"), ("knee", "knees"),
               ("circle", "circles"), ("hop", "hops"), ("turn", "turns"), ("spin", "spins")):
  _LEX[pl] = (sg, "NOUN")
  _LEX.setdefault(sg, (sg, "NOUN"))
_LEX["feet"] = ("foot", "NOUN")
_add("NOUN", "floor ground toe object thing something torso body trunk direction side")
for sg, pl in (("toe", "toes"), ("object", "objects"), ("thing", "things")):
  _LEX[pl] = (sg, "NOUN")
_LEX["something"] = ("something", "PRON")
for lemma, third, ing in (
    ("walk", "walks", "walking"), ("stroll", "strolls", "strolling"), ("jog", "jogs", "jogging"),
    ("run", "runs", "running"), ("sprint", "sprints", "sprinting"), ("trot", "trots", "trotting"),
    ("move", "moves", "moving"), ("step", "steps", "stepping"), ("sidestep", "sidesteps", "sidestepping"),
    ("take", "takes", "taking"), ("turn", "turns", "turning"), ("rotate", "rotates", "rotating"),
    ("spin", "spins", "spinning"), ("pivot", "pivots", "pivoting"),
    ("jump", "jumps", "jumping"), ("hop", "hops", "hopping"), ("leap", "leaps", "leaping"),
    ("squat", "squats", "squatting"), ("crouch", "crouches", "crouching"), ("bend", "bends", "bending"),
    ("stand", "stands", "standing"), ("wave", "waves", "waving"), ("raise", "raises", "raising"),
    ("lift", "lifts", "lifting"), ("put", "puts", "putting"), ("hold", "holds", "holding"),
    ("punch", "punches", "punching"), ("throw", "throws", "throwing"), ("jab", "jabs", "jabbing"),
    ("kick", "kicks", "kicking"), ("clap", "claps", "clapping"), ("sit", "sits", "sitting"),
    ("get", "gets", "getting"), ("rise", "rises", "rising"), ("wait", "waits", "waiting"),
    ("stay", "stays", "staying"), ("do", "does", "doing"), ("make", "makes", "making"),
    ("go", "goes", "going"), ("lower", "lowers", "lowering"), ("strike", "strikes", "striking"),
    ("travel", "travels", "traveling"), ("curve", "curves", "curving"),
    ("kneel", "kneels", "kneeling"), ("hunker", "hunkers", "hunkering"), ("lean", "leans", "leaning"),
    ("pick", "picks", "picking"), ("reach", "reaches", "reaching"), ("touch", "touches", "touching"),
    ("stretch", "stretches", "stretching"), ("twist", "twists", "twisting"), ("point", "points", "pointing"),
    ("swing", "swings", "swinging"), ("shake", "shakes", "shaking"), ("extend", "extends", "extending"),
    ("drop", "drops", "dropping"), ("come", "comes", "coming"), ("straighten", "straightens", "straightening")):
  _verb(lemma, third, ing)
_LEX["thrown"] = ("throw", "VERB")
_add("ADV", "forward forwards ahead straight backward backwards back sideways around then "
     "slowly quickly briskly fast again up down still idle once twice repeatedly about roughly "
     "high briefly together afterwards finally first slightly low out over forth loosely upward "
     "sideways")
_add("ADJ", "left right slow quick brisk full half quarter few small big short long several "
     "same other standing upright low deep upper")
_add("ADP", "to in on with of at along from into for over above by in")
_add("CCONJ", "and or")
_add("SCONJ", "while before after")
_add("PART", "'s")
_LEX["up"] = ("up", "ADP")


def tag(caption: str) -> str:
  """`word/POS` tokens (lemmatised, lower case, punctuation dropped) of a caption."""
  out = []
  for word in re.findall(r"[a-z0-9']+", caption.lower()):
    if word.isdigit():
      out.append(f"{word}/NUM")
      continue
    if word in NUMBER_WORDS.values():
      out.append(f"{word}/NUM")
      continue
    if word not in _LEX:
      raise KeyError(f"caption word {word!r} is not in the synthetic lexicon "
                     f"(llamo_jax/synthetic/captions.py); caption: {caption!r}")
    lemma, pos = _LEX[word]
    out.append(f"{lemma}/{pos}")
  return " ".join(out)


def humanml3d_line(caption: str, start: float = 0.0, end: float = 0.0) -> str:
  """One line of a HumanML3D texts/ID.txt file."""
  return f"{caption}#{tag(caption)}#{start:.1f}#{end:.1f}"


def parse_line(line: str) -> tuple[str, list[tuple[str, str]], float, float]:
  """Inverse of humanml3d_line: (caption, [(lemma, POS)], start, end)."""
  parts = line.rstrip("\n").split("#")
  if len(parts) != 4:
    raise ValueError(f"HumanML3D text line needs 4 '#'-separated fields, got {len(parts)}: {line!r}")
  caption, tags, start, end = parts
  tokens = [tuple(t.rsplit("/", 1)) for t in tags.split(" ") if t]
  return caption, tokens, float(start), float(end)


# ---------------------------------------------------------------- the grammar

def _times(n: int, rng) -> str:
  if n in TIMES and rng.random() < 0.7:
    return TIMES[n]
  return f"{NUMBER_WORDS.get(n, str(n))} times"


def _num(n: int, rng) -> str:
  return NUMBER_WORDS.get(n, str(n)) if rng.random() < 0.8 else str(n)


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def _meters(d: float, rng) -> str:
  m = max(1, int(round(d)))
  word = "meter" if m == 1 else "meters"
  return _pick(rng, [f"about {_num(m, rng)} {word}", f"roughly {_num(m, rng)} {word}"])


def _speed_adv(gait: str, speed: float | None) -> str:
  if gait != "walk" or speed is None:
    return ""
  if speed < 1.0:
    return "slowly"
  if speed > 1.4:
    return "quickly"
  return ""


def _walk(rec, rng) -> str:
  gait, d, speed = rec["action"], rec.get("direction"), rec.get("speed")
  verb = {"walk": ["walks", "walks", "strolls", "moves"], "jog": ["jogs", "jogs", "trots", "runs slowly"],
          "run": ["runs", "runs", "sprints", "runs fast"]}[gait]
  v = _pick(rng, verb)
  dist = rec.get("distance", 0.0)
  if d == "forward" and rec.get("side"):
    side, angle = rec["side"], rec.get("angle", 90.0)
    phrase = _pick(rng, [
        f"{v} forward while turning {side}", f"{v} in a curve to the {side}",
        f"{v} along an arc to the {side}", f"{v} forward and turns {side}",
        f"{v} in a half circle to the {side}" if angle > 150 else f"{v} forward curving to the {side}"])
  elif d == "forward":
    phrase = _pick(rng, [f"{v} forward", f"{v} straight ahead", f"{v} forward",
                         f"{v} forward {_meters(dist, rng)}" if dist >= 1.0 else f"{v} forward",
                         "takes a few steps forward" if gait == "walk" and dist < 3 else f"{v} ahead"])
  elif d == "backward":
    phrase = _pick(rng, [f"{v} backward", f"{v} backwards", "steps back",
                         "walks backwards" if gait == "walk" else f"{v} backward",
                         f"{v} backward {_meters(dist, rng)}" if dist >= 1.0 else f"{v} backwards"])
  else:
    phrase = _pick(rng, [f"{v} sideways to the {d}", f"sidesteps to the {d}",
                         f"steps sideways to the {d}", f"{v} to the {d}",
                         f"moves sideways to the {d}"])
  adv = _speed_adv(gait, speed)
  if adv and rng.random() < 0.7:
    phrase = f"{phrase} {adv}" if rng.random() < 0.5 else f"{adv} {phrase}"
  return phrase


def _turn(rec, rng) -> str:
  side, angle = rec["side"], int(round(rec.get("angle") or 90))
  angle = int(round(angle / 45.0) * 45)
  options = [f"turns {side}", f"turns to the {side}", f"turns {angle} degrees to the {side}",
             f"rotates {angle} degrees to the {side}", f"turns {angle} degrees {side}"]
  if angle >= 180:
    options += ["turns around", f"turns around to the {side}", "makes a half turn"]
  elif angle == 90:
    options += [f"makes a quarter turn to the {side}", f"turns {side}"]
  elif angle == 45:
    options += [f"turns slightly to the {side}"]
  return _pick(rng, options)


def _spin(rec, rng) -> str:
  n = max(1, int(rec.get("count") or 1))
  side = rec["side"]
  if n == 1:
    return _pick(rng, ["spins around", "spins in a full circle", "turns around in a full circle",
                       f"spins around to the {side}", "does a full spin", "spins once"])
  return _pick(rng, [f"spins around {_times(n, rng)}", f"spins {_times(n, rng)}",
                     f"turns in {_num(n, rng)} full circles", f"does {_num(n, rng)} spins"])


def _jump(rec, rng) -> str:
  n = int(rec.get("count") or 1)
  if rec.get("direction") == "forward":
    if n == 1:
      return _pick(rng, ["jumps forward", "leaps forward", "does a jump forward", "hops forward",
                         "jumps ahead"])
    return _pick(rng, [f"jumps forward {_times(n, rng)}", f"does {_num(n, rng)} jumps forward",
                       f"leaps forward {_times(n, rng)}", f"hops forward {_times(n, rng)}"])
  if n == 1:
    return _pick(rng, ["jumps", "jumps in place", "jumps up", "does a jump", "jumps on the spot",
                       "jumps up and down once"])
  return _pick(rng, [f"jumps {_times(n, rng)}", f"jumps in place {_times(n, rng)}",
                     f"jumps up and down {_times(n, rng)}", f"does {_num(n, rng)} jumps",
                     "jumps repeatedly" if n >= 3 else f"jumps {_times(n, rng)}"])


def _squat(rec, rng) -> str:
  n = int(rec.get("count") or 1)
  if n == 1:
    return _pick(rng, ["squats", "does a squat", "squats down and stands back up",
                       "bends the knees into a squat", "crouches down and stands up again"])
  return _pick(rng, [f"squats {_times(n, rng)}", f"does {_num(n, rng)} squats",
                     f"squats down and up {_times(n, rng)}", f"crouches {_times(n, rng)}"])


def _wave(rec, rng) -> str:
  s = rec["side"]
  return _pick(rng, [f"waves with the {s} hand", f"waves the {s} hand", f"raises the {s} hand and waves",
                     f"waves hello with the {s} hand", f"waves with the {s} arm",
                     f"lifts the {s} hand and waves it"])


def _raise(rec, rng) -> str:
  s = rec["side"]
  if s == "both":
    return _pick(rng, ["raises both arms", "raises both hands above the head", "lifts both arms up",
                       "puts both hands up in the air", "raises both arms over the head"])
  return _pick(rng, [f"raises the {s} arm", f"raises the {s} hand", f"lifts the {s} arm up",
                     f"puts the {s} hand up in the air", f"raises the {s} hand above the head"])


def _punch(rec, rng) -> str:
  s, n = rec["side"], int(rec.get("count") or 1)
  if n == 1:
    return _pick(rng, [f"punches with the {s} hand", f"throws a punch with the {s} fist",
                       f"punches forward with the {s} arm", f"does a {s} punch"])
  return _pick(rng, [f"punches {_times(n, rng)} with the {s} hand",
                     f"throws {_num(n, rng)} punches with the {s} fist",
                     f"punches forward with the {s} arm {_times(n, rng)}",
                     f"jabs {_times(n, rng)} with the {s} hand"])


def _kick(rec, rng) -> str:
  s, n = rec["side"], int(rec.get("count") or 1)
  if n == 1:
    return _pick(rng, [f"kicks with the {s} leg", f"kicks forward with the {s} foot",
                       f"does a kick with the {s} leg", f"kicks the {s} leg forward"])
  return _pick(rng, [f"kicks {_times(n, rng)} with the {s} leg",
                     f"does {_num(n, rng)} kicks with the {s} leg",
                     f"kicks forward with the {s} foot {_times(n, rng)}"])


def _clap(rec, rng) -> str:
  n = int(rec.get("count") or 1)
  return _pick(rng, [f"claps {_times(n, rng)}", f"claps the hands {_times(n, rng)}",
                     "claps the hands together", "claps", f"claps {_num(n, rng)} times"
                     if n > 2 else "claps the hands"])


def _sit_down(rec, rng) -> str:
  return _pick(rng, ["sits down", "sits down on a chair", "takes a seat", "sits down on the chair",
                     "bends the knees and sits down"])


def _stand_up(rec, rng) -> str:
  return _pick(rng, ["stands up", "gets up", "stands up from the chair", "rises from the seat",
                     "gets up from the chair"])


def _idle(rec, rng) -> str:
  return _pick(rng, ["stands still", "stands in place", "waits", "stays standing",
                     "stands idle", "stands still briefly"])


def _crouch(rec, rng) -> str:
  return _pick(rng, ["crouches down", "crouches down low", "crouches low and stands up again",
                     "gets down into a deep crouch", "hunkers down", "crouches down and stays low",
                     "crouches down for a while and then stands up"])


def _kneel(rec, rng) -> str:
  s = rec["side"]
  if s == "both":
    return _pick(rng, ["kneels down on both knees", "kneels on both knees and gets back up",
                       "goes down on both knees", "drops to both knees and stands up again",
                       "kneels down"])
  return _pick(rng, [f"kneels down on the {s} knee", f"goes down on the {s} knee",
                     "kneels down on one knee", f"drops to the {s} knee and gets back up",
                     f"kneels on the {s} knee and stands up again", "goes down on one knee"])


def _bend(rec, rng) -> str:
  s = rec.get("side")
  if rec.get("variant") == "over":
    return _pick(rng, ["bends over", "bends forward and touches the toes", "bends down to the floor",
                       "leans forward and reaches for the floor", "bends over and straightens up again"])
  if s == "both":
    return _pick(rng, ["bends down and picks something up with both hands",
                       "picks up an object from the floor with both hands",
                       "bends over to pick something up", "bends down and picks up a big object"])
  return _pick(rng, [f"picks something up with the {s} hand", f"bends down and picks up an object with the {s} hand",
                     "bends down to pick something up", f"reaches down to the floor with the {s} hand and picks something up",
                     "picks something up from the floor"])


def _stretch(rec, rng) -> str:
  v, s = rec.get("variant"), rec.get("side")
  if v == "side":
    return _pick(rng, [f"stretches the arms up and leans to the {s}", f"bends sideways to the {s}",
                       f"stretches and bends to the {s} side", f"leans to the {s} with the arms over the head"])
  if v == "twist":
    return _pick(rng, [f"twists the torso to the {s}", f"twists the upper body to the {s}",
                       f"stretches the arms out and twists to the {s}", f"twists to the {s}"])
  return _pick(rng, ["stretches the arms over the head", "stretches", "reaches both arms up and stretches",
                     "stretches both arms high over the head", "stretches upward"])


def _gesture(rec, rng) -> str:
  v, s = rec.get("variant"), rec.get("side")
  n = int(rec.get("count") or 2)
  if v == "reach":
    return _pick(rng, [f"reaches out with the {s} hand", f"reaches out with the {s} arm",
                       f"extends the {s} arm and reaches for something", f"reaches for something with the {s} hand"])
  if v == "point":
    return _pick(rng, [f"points with the {s} hand", f"points with the {s} arm", f"points in a direction with the {s} hand",
                       f"extends the {s} arm and points"])
  if v == "swing":
    return _pick(rng, ["swings the arms back and forth", "swings both arms", f"swings the arms {_times(n, rng)}",
                       "swings the arms loosely"])
  return _pick(rng, ["shakes the hands", "shakes out the arms", "shakes both hands loosely",
                     "shakes the arms out"])


PHRASES = {"walk": _walk, "jog": _walk, "run": _walk, "turn": _turn, "spin": _spin, "jump": _jump,
           "squat": _squat, "wave": _wave, "raise": _raise, "punch": _punch, "kick": _kick,
           "clap": _clap, "sit_down": _sit_down, "stand_up": _stand_up, "idle": _idle,
           "crouch": _crouch, "kneel": _kneel, "bend": _bend, "stretch": _stretch, "gesture": _gesture}
SUBJECTS = ("a person", "a person", "a man", "a woman", "someone", "the person", "a figure",
            "a human")
CONNECTORS = (" and then ", ", then ", " then ", " and ", ", after that ")


def _sentence(records, rng) -> str:
  subject = _pick(rng, SUBJECTS)
  # Idle padding is often left unsaid, as annotators do.
  recs = [r for r in records if r["action"] != "idle" or rng.random() < 0.4] or records[:1]
  phrases = [PHRASES[r["action"]](r, rng) for r in recs]
  text = phrases[0]
  for p in phrases[1:]:
    conn = _pick(rng, CONNECTORS)
    if conn == ", after that " and rng.random() < 0.5:
      text += f". then {subject} {p}"
      continue
    text += conn + p
  return f"{subject} {text}."


def describe(records: list[dict], rng: np.random.Generator, count: int) -> list[str]:
  """`count` distinct captions of a clip (fewer only if the grammar runs dry)."""
  out: list[str] = []
  for _ in range(count * 20):
    c = _sentence(records, rng)
    if c not in out:
      out.append(c)
    if len(out) == count:
      break
  return out
