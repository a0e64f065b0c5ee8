"""evaluate_motions on two HumanML3D-layout folders, with the fake evaluator standing in for a trained one."""
import json
import pathlib
import types

import numpy as np
import pytest

from fake_gcs import fake_gcs
from llamo_jax import evaluate_motions
from llamo_jax.core import paths
from tests.eval.fake_evaluator import FakeEvaluator, clip_features


def write_folder(root: pathlib.Path, features: dict[str, np.ndarray], split: str | None = "test",
                 texts: dict[str, str] | None = None) -> None:
  for sub in ("new_joint_vecs", "texts"):
    (root / sub).mkdir(parents=True, exist_ok=True)
  for cid, f in features.items():
    np.save(root / "new_joint_vecs" / f"{cid}.npy", f)
    if texts is None or cid in texts:
      text = texts[cid] if texts else f"a person does clip {int(cid)}#a/DET person/NOUN#0.0#0.0"
      (root / "texts" / f"{cid}.txt").write_text(text + "\n")
  if split:
    (root / f"{split}.txt").write_text("".join(f"{cid}\n" for cid in features))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp("evaluate_motions")
  rng = np.random.default_rng(0)
  ref = {f"{i:03d}": clip_features(i, int(rng.integers(60, 190)), rng, noise=0.02) for i in range(40)}
  write_folder(root / "ref", ref)
  gen = {cid: f + rng.normal(scale=0.3, size=f.shape).astype(np.float32) for cid, f in ref.items()}
  gen["001"][5] = np.nan
  del gen["002"]  # missing file
  write_folder(root / "gen", gen, split=None, texts={c: f"clip {int(c)}" for c in gen if c != "003"})
  return root


def test_run_counts_bad_files_and_scores_the_rest(folders, tmp_path):
  out = tmp_path / "emb.npz"
  m = evaluate_motions.run(FakeEvaluator(), str(folders / "ref"), str(folders / "gen"), num_repeats=2,
                           crop="none", embeddings_out=str(out), progress=False)
  skipped = m["protocol"]["skipped"]
  assert skipped["by_reason"] == {"non_finite": 1, "missing_motion": 1, "missing_text": 1}
  assert {d["id"] for d in skipped["clips"]} == {"001", "002", "003"}
  assert m["protocol"]["num_clips"] == 37
  assert set(m["t2m"]) == {"fid", "r_precision", "mm_dist", "diversity"}
  assert m["t2m"]["r_precision"]["top1"]["mean"] > 0.9
  assert set(m["physical"]) >= {"foot_skating", "peak_jerk", "auj", "penetration_mm", "floating_mm", "reference"}
  json.dumps(m)  # serialisable
  emb = np.load(out)
  assert emb["motion"].shape == (37, 16) and "001" not in set(emb["ids"])
  real = evaluate_motions.run(FakeEvaluator(), str(folders / "ref"), None, num_repeats=2, progress=False)
  assert real["t2m"]["fid"]["mean"] < m["t2m"]["fid"]["mean"]


def test_run_refuses_an_evaluator_of_the_other_representation(folders):
  with pytest.raises(FileNotFoundError, match="vecs272 does not exist"):
    evaluate_motions.run(FakeEvaluator("mm272"), str(folders / "ref"), str(folders / "gen"), num_repeats=1,
                         progress=False)


def test_main_reads_and_writes_gcs(folders, tmp_path, monkeypatch):
  """Every path flag on gs:// (a fake bucket only epath reaches): folders, evaluator, --out, --embeddings_out."""
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would land under ./gs:
  loaded = []
  monkeypatch.setattr(evaluate_motions.evaluator_lib, "load_evaluator", lambda path: loaded.append(path) or FakeEvaluator())
  monkeypatch.setattr(evaluate_motions.flags, "FLAGS", types.SimpleNamespace(
      evaluator="gs://b/evaluator", reference="gs://b/ref", generated="gs://b/gen", split="test", crop="none",
      num_repeats=1, seed=0, embeddings_out="gs://b/out/emb.npz", out="gs://b/out/metrics.json"))
  with fake_gcs(tmp_path / "bucket"):
    paths.upload_tree(folders / "ref", "gs://b/ref")
    paths.upload_tree(folders / "gen", "gs://b/gen")
    evaluate_motions.main(["evaluate_motions"])
  out = tmp_path / "bucket" / "gs:" / "b" / "out"
  m = json.loads((out / "metrics.json").read_text())
  assert loaded == ["gs://b/evaluator"] and m["evaluator"] == "gs://b/evaluator"
  assert m["reference"] == "gs://b/ref" and m["generated"] == "gs://b/gen"
  assert m["protocol"]["skipped"]["by_reason"] == {"non_finite": 1, "missing_motion": 1, "missing_text": 1}
  assert m["protocol"]["num_clips"] == 37 and m["t2m"]["r_precision"]["top1"]["mean"] > 0.9
  assert np.load(out / "emb.npz")["motion"].shape == (37, 16)
  assert not (tmp_path / "gs:").exists(), "a gs:// path was written to the local disk"
