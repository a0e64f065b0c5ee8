r"""Where does a LLaMo run lose its text? Linear probes and one-step predictions on held-out clips.

  python bench/diagnose_text_following.py --workdirs=workdirs/demo/llamo[,OTHER/llamo] \
      [--names=demo,...] [--clips=390] [--probe_train=3000] [--write=True]

On the latent records of each run's VAE (test split; the probes fit on the train split):
  - probes: ridge classifiers (one-vs-rest) on the final hidden state at [BOM] (which conditions
    the first latent) and at the first motion position m1, predicting the clip's first action
    and, for sided actions and sideways walks, left or right; held-out accuracy. High accuracy
    means the state the flow head reads carries the words;
  - one-step predictions: every latent drawn by the flow head (CFG off, 25 Euler steps) from the
    real latents before it, the whole sequence decoded, attribute accuracy per segment
    (`eval/action_checks.py`) next to the real latents decoded. Near the decoded-real figure
    means the model predicts well from real history; free-running generation
    (`evaluate`, and `evaluate --continuations` for given first latents) shows what its own
    history costs.
Prints the figures and replaces the diagnose_text_following section of BENCHMARKS.md.
"""
import json
import pathlib
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from llamo_jax import tasks  # pylint: disable=g-import-not-at-top  (after the sys.path setup above)
from llamo_jax.data import records  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.data import sequences  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.eval import action_checks  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.generation import decode  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.models import flow_head as flow_lib  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.models import llamo as llamo_lib  # pylint: disable=g-import-not-at-top  (same)
from llamo_jax.training import runs  # pylint: disable=g-import-not-at-top  (same)

import benchmarks_md  # bench/benchmarks_md.py

_WORKDIRS = flags.DEFINE_list("workdirs", None, "LLaMo run workdirs (trained on a synthetic corpus).")
_NAMES = flags.DEFINE_list("names", None, "Row labels, one per workdir (default: the workdirs).")
_CLIPS = flags.DEFINE_integer("clips", 390, "Held-out (test) clips.")
_PROBE_TRAIN = flags.DEFINE_integer("probe_train", 3000, "Train clips the probes fit on.")
_WRITE = flags.DEFINE_bool("write", True, "Write the section into BENCHMARKS.md.")

ROW_LEN = 128     # tokens per forward row (prompt + at most 50 latents)
BATCH = 32
RIDGE = 10.0
FLOW_STEPS = 25


def _examples(task, split: str, n: int, rng: np.random.Generator) -> list[dict]:
  """T2M examples of the first n clips of `split` with a first non-idle action, one caption each."""
  source = records.open_dataset(task.latents_path).data_source(split)
  out = []
  for i in range(len(source)):
    rec = records.decode(source[i])
    segments = [s for s in json.loads(rec["attributes"] or "{}").get("segments", []) if s["action"] != "idle"]
    if not segments:
      continue
    k = min(rec["length"], 50)
    z = (rec["features"][:k] - task.latent_mean) / task.latent_std
    caption = rec["captions"][int(rng.integers(len(rec["captions"])))]
    ex = sequences.build_example("t2m", caption, z, task.tokenizer, task.bom, task.eom)
    p = len(sequences.t2m_prompt(task.tokenizer, caption, task.bom))
    if len(ex["tokens"]) > ROW_LEN:
      continue
    first = segments[0]
    out.append(dict(ex=ex, p=p, k=k, z=z, attributes=rec["attributes"], action=first["action"],
                    side=first.get("side") or first.get("direction")))
    if len(out) == n:
      break
  return out


def _hidden(model, examples: list[dict]) -> np.ndarray:
  """Final hidden states [N, ROW_LEN, D] of the examples, teacher-forced, in batches."""
  forward = jax.jit(lambda tokens, latents, modality: model(tokens, latents, modality)[1])
  out = []
  for start in range(0, len(examples), BATCH):
    chunk = examples[start:start + BATCH]
    arrays = {key: np.zeros((BATCH, ROW_LEN) + chunk[0]["ex"][key].shape[1:], chunk[0]["ex"][key].dtype)
              for key in ("tokens", "latents", "modality")}
    for i, e in enumerate(chunk):
      for key, a in arrays.items():
        a[i, :len(e["ex"][key])] = e["ex"][key]
    h = forward(*(jnp.asarray(arrays[key]) for key in ("tokens", "latents", "modality")))
    out.append(np.asarray(h, np.float32)[:len(chunk)])
  return np.concatenate(out)


def _probe(x_train, y_train, x_test, y_test) -> float:
  """Held-out accuracy of a one-vs-rest ridge classifier on standardised features."""
  classes = sorted(set(y_train))
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  a = np.concatenate([(x_train - mean) / std, np.ones((len(x_train), 1))], 1)
  b = np.concatenate([(x_test - mean) / std, np.ones((len(x_test), 1))], 1)
  targets = -np.ones((len(a), len(classes)))
  targets[np.arange(len(a)), [classes.index(y) for y in y_train]] = 1
  w = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ targets)
  return float(np.mean([classes[i] == y for i, y in zip((b @ w).argmax(1), y_test)]))


def _attribute_accuracy(task, latents: list[np.ndarray], attributes: list[str]) -> float:
  """Segment attribute accuracy of normalised latent sequences, decoded by the run's VAE."""
  k = max(len(z) for z in latents)
  batch = np.zeros((len(latents), k, latents[0].shape[1]), np.float32)
  for i, z in enumerate(latents):
    batch[i, :len(z)] = z
  feats = decode.decode_latents(task.vae, batch, np.array([len(z) for z in latents]), task.latent_mean,
                                task.latent_std)
  joints = [np.asarray(task.representation.to_joints(f * task.vae_task.std + task.vae_task.mean)) for f in feats]
  return action_checks.attribute_accuracy(joints, attributes, task.representation.fps)["segments"]


def diagnose(workdir: str) -> dict:
  config = runs.load_run_config(workdir, task="llamo")
  task, model, step = tasks.restore_for_eval(config, workdir)
  model = llamo_lib.for_inference(model)
  rng = np.random.default_rng(0)
  train = _examples(task, "train", _PROBE_TRAIN.value, rng)
  test = _examples(task, "test", _CLIPS.value, rng)
  h_train, h_test = _hidden(model, train), _hidden(model, test)
  result = {"workdir": workdir, "step": step, "clips": len(test)}
  for name, offset in (("bom", -1), ("m1", 0)):
    at = lambda h, ex: np.stack([h[i, e["p"] + offset] for i, e in enumerate(ex)])
    x_train, x_test = at(h_train, train), at(h_test, test)
    result[f"{name}_action"] = _probe(x_train, [e["action"] for e in train], x_test, [e["action"] for e in test])
    sided = lambda ex: [i for i, e in enumerate(ex) if e["side"] in ("left", "right")]
    tr, te = sided(train), sided(test)
    result[f"{name}_side"] = _probe(x_train[tr], [train[i]["side"] for i in tr], x_test[te], [test[i]["side"] for i in te])
  sample = jax.jit(lambda h, key: flow_lib.sample(model.flow_head, h, key, steps=FLOW_STEPS))
  predicted = []
  for start in range(0, len(test), BATCH):
    z = np.asarray(sample(jnp.asarray(h_test[start:start + BATCH]), jax.random.key(start)))
    predicted += [z[i, e["p"] - 1:e["p"] - 1 + e["k"]] for i, e in enumerate(test[start:start + BATCH])]
  attributes = [e["attributes"] for e in test]
  result["one_step"] = _attribute_accuracy(task, predicted, attributes)
  result["real_decoded"] = _attribute_accuracy(task, [e["z"] for e in test], attributes)
  return result


def main(argv):
  del argv
  names = _NAMES.value or _WORKDIRS.value
  if len(names) != len(_WORKDIRS.value):
    raise app.UsageError(f"--names has {len(names)} labels for {len(_WORKDIRS.value)} workdirs.")
  rows = []
  for name, workdir in zip(names, _WORKDIRS.value):
    r = diagnose(workdir)
    print(json.dumps(r))
    rows.append(f"| {name} (step {r['step']}) | {r['clips']} | {100 * r['bom_action']:.1f} / "
                f"{100 * r['bom_side']:.1f} | {100 * r['m1_action']:.1f} / {100 * r['m1_side']:.1f} | "
                f"{100 * r['one_step']:.1f} | {100 * r['real_decoded']:.1f} |")
  benchmarks_md.publish(
      "diagnose_text_following", "LLaMo: where the text is lost (bench/diagnose_text_following.py)",
      "`python bench/diagnose_text_following.py --workdirs=...`: on held-out test clips of the run's corpus "
      "(one seeded caption each), ridge probes (fit on 3000 train clips) read the first action and its side "
      "(left/right) off the final hidden state at [BOM] and at m1; attribute accuracy per segment of the "
      "sequence of one-step predictions (each latent drawn from the real latents before it, CFG off, "
      f"{FLOW_STEPS} Euler steps) next to the real latents decoded. Percent.",
      ["run", "clips", "[BOM]: action / side", "m1: action / side", "one-step predictions: segments",
       "real latents decoded: segments"], rows, write=_WRITE.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
