"""Builds the bundled synthetic corpus and its records on first use, so a run needs one command.

Process 0 builds; every process then waits at a barrier. Existing data is never rebuilt
or overwritten: to change it, delete the folder or point the config elsewhere. Both the
corpus and the records are built in a temporary folder and renamed when complete, so a
build killed half-way leaves nothing behind and the next run builds it again.
"""
from __future__ import annotations

import jax
import ml_collections
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from llamo_jax.core import paths
from llamo_jax.data import record_builder
from llamo_jax.data import records
from llamo_jax.data import sources
from llamo_jax.synthetic import corpus as corpus_lib


def ensure_synthetic_corpus(corpus: ml_collections.ConfigDict) -> epath.Path:
  """The HumanML3D-layout corpus at `corpus.dir`, generated if absent.

  Keys: dir, num_motions, seed, fps (20 | 30), holdout ("" or "action:side,..."), and optionally
  actions (the action set, synthetic/program.py ACTION_SETS; default "core") and layout (the rig's
  rest layout, synthetic/rig.py LAYOUTS; default "target").
  """
  root = epath.Path(corpus.dir)
  version = sources.synthetic_corpus_version(root)
  asked = {"action_set": corpus.get("actions", "core"), "layout": corpus.get("layout", "target")}
  built = sources.synthetic_corpus_build(root)
  for key, config_key in (("action_set", "actions"), ("layout", "layout")):
    if built is not None and built[key] != asked[key]:
      raise ValueError(f"The synthetic corpus at {root} was built with {key} {built[key]!r}, but the config "
                       f"asks for data.corpus.{config_key}={asked[key]!r}; point data.corpus.dir and "
                       "data.path at other folders.")
  if version is not None and version != corpus_lib.VERSION:
    # A corpus is consistent with itself and with runs trained on it: use it, and say how to renew it.
    logging.warning("The synthetic corpus at %s was built by generator version %d; this code writes "
                    "version %d (its captions differ). Using it as it is; to train on the new one, delete %s "
                    "and the records built from it (data.path), or set data.corpus.dir and data.path to "
                    "new folders.", root, version, corpus_lib.VERSION, root)
  if jax.process_index() == 0 and version is None:
    if root.exists() and any(root.iterdir()):
      raise FileExistsError(f"{root} exists but holds no corpus.json: it is not a finished synthetic corpus. "
                            "Delete it or set config.data.corpus.dir to another folder.")
    logging.info("building the synthetic corpus (%d clips) in %s", corpus.num_motions, root)
    with paths.staged_dir(root) as local:  # the generator writes local files
      corpus_lib.build(local, corpus_lib.Config(
          num_motions=corpus.num_motions, seed=corpus.seed, fps=corpus.fps,
          holdout=corpus_lib.parse_holdout(corpus.get("holdout", "")), processes=corpus.get("processes", 2),
          actions=asked["action_set"], layout=asked["layout"]))
  multihost_utils.sync_global_devices("synthetic_corpus")
  return root


def ensure_records(corpus_dir: epath.Path, records_path: str, representation: str, *,
                   mirror: bool = False) -> epath.Path:
  """The record dataset at `records_path`, built from `corpus_dir` if absent (with mirrored train
  clips when `mirror`); an existing one built the other way is refused."""
  target = epath.Path(records_path)
  if jax.process_index() == 0 and not target.exists():
    logging.info("building %s records of %s in %s", representation, corpus_dir, target)
    report = record_builder.build_records(corpus_dir, target.parent, representation=representation,
                                          name=target.name, mirror=mirror)
    logging.info("%s", record_builder.format_report(report))
  multihost_utils.sync_global_devices("records")
  dataset = records.open_dataset(target)
  built_from = dataset.corpus_version or 1  # records from before the field: version 1
  version = sources.synthetic_corpus_version(corpus_dir)
  if version not in (None, built_from):
    raise ValueError(f"The records at {target} were built from synthetic corpus version {built_from}, and "
                     f"{corpus_dir} is version {version}; delete {target} (it is rebuilt on the next run) or "
                     "point data.path at another folder.")
  built_mirrored = dataset.mirrored_train
  if built_mirrored != mirror:
    raise ValueError(f"The records at {target} were built with mirror={built_mirrored}, but the config asks "
                     f"for data.mirror={mirror}; point data.path at another folder (or delete this one).")
  return target
