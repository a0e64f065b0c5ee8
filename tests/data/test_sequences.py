"""LLaMo sequences: targets and masks per task kind, packing, capacities, hosts, resume."""
import json

import grain
import ml_collections
import numpy as np
import pytest

from llamo_jax.data import records
from llamo_jax.data import sequences
from llamo_jax.data import sources
from llamo_jax.data import text as text_data
from llamo_jax.data.tokenizer import Tokenizer

C = 4
CAPTIONS = ["a person walks forward", "someone jumps in place", "the man waves his right hand",
            "a person turns left slowly", "a woman squats down"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  lines = CAPTIONS * 4 + list(sequences.T2M_TEMPLATES) + list(sequences.M2T_TEMPLATES)
  path = text_data.train_sentencepiece(lines, 320, tmp_path_factory.mktemp("sp") / "sp")
  return Tokenizer.load(path)


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory):
  """A latent record dataset: 12 train / 4 val clips of 3..10 latents; every 3rd clip static."""
  rng = np.random.default_rng(0)

  def clips(n, offset):
    for i in range(n):
      k = int(rng.integers(3, 11))
      speed = 0.0 if (i + offset) % 3 == 0 else 1.2
      yield sources.Clip(clip_id=f"{offset + i:04d}", source_id="test",
                         features=rng.normal(size=(k, C)).astype(np.float32),
                         joints=np.zeros((0, 22, 3), np.float32),
                         captions=tuple(rng.choice(CAPTIONS, 2, replace=False)),
                         attributes=json.dumps({sequences.ROOT_SPEED_KEY: speed}))
  root = tmp_path_factory.mktemp("latents")
  built = records.write_splits(root, name="lat", dim=C, splits={"train": clips(12, 0), "val": clips(4, 100)},
                               description="test latents")
  np.save(built / records.MEAN_FILE, np.zeros(C, np.float32))
  np.save(built / records.STD_FILE, np.ones(C, np.float32))
  meta = {"format_version": records.FORMAT_VERSION, "name": "lat", "representation": "vae_latent:hml263",
          "dim": C, "fps": 5.0, "source": "test", "source_format": "records", "min_len": 1, "stats": "",
          "split_sizes": {"train": 12, "val": 4}}
  (built / records.META_FILE).write_text(json.dumps(meta))
  return built


def config_for(latent_dir, **data):
  config = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict(dict(latents=str(latent_dir), seq_len=64, batch_size=4,
                                               max_motion_tokens=8, static_speed=0.05))
  config.data.update(data)
  config.model = ml_collections.ConfigDict(dict(text_capacity=None, motion_capacity=None))
  return config


BOM, EOM = 1000, 1001


def test_t2m_example_targets(tokenizer):
  z = np.arange(3 * C, dtype=np.float32).reshape(3, C) + 1
  ex = sequences.build_example("t2m", "a person walks forward", z, tokenizer, BOM, EOM)
  prompt = sequences.t2m_prompt(tokenizer, "a person walks forward", BOM)
  p = len(prompt)
  np.testing.assert_array_equal(ex["tokens"][:p], prompt)
  assert ex["tokens"][p - 1] == BOM and list(ex["tokens"][p + 3:]) == [EOM, tokenizer.eos_id]
  np.testing.assert_array_equal(ex["modality"], np.r_[np.zeros(p), np.ones(3), np.zeros(2)])
  np.testing.assert_array_equal(ex["latents"][p:p + 3], z)
  # [BOM] -> m1, m1 -> m2, m2 -> m3; nothing after the last latent.
  np.testing.assert_array_equal(np.nonzero(ex["flow_mask"])[0], [p - 1, p, p + 1])
  np.testing.assert_array_equal(ex["flow_targets"][p - 1:p + 2], z)
  np.testing.assert_array_equal(np.nonzero(ex["exit_labels"])[0], [p + 2])
  np.testing.assert_array_equal(np.nonzero(ex["exit_mask"])[0], [p, p + 1, p + 2])
  # Only [EOM] -> [EOS] is a text target; the condition is everything before [BOM].
  np.testing.assert_array_equal(np.nonzero(ex["text_mask"])[0], [p + 3])
  assert ex["text_targets"][p + 3] == tokenizer.eos_id
  np.testing.assert_array_equal(np.nonzero(ex["cond_mask"])[0], np.arange(p - 1))


def test_m2t_and_text_examples(tokenizer):
  z = np.ones((2, C), np.float32)
  ex = sequences.build_example("m2t", "someone jumps in place", z, tokenizer, BOM, EOM)
  p = len(sequences.m2t_prompt(tokenizer, BOM))
  caption = tokenizer.encode("someone jumps in place", add_bos=False, add_eos=True)
  assert ex["tokens"][p + 2] == EOM
  # [EOM] predicts the caption's first token, ..., the last caption token predicts EOS.
  trained = np.nonzero(ex["text_mask"])[0]
  np.testing.assert_array_equal(trained, np.arange(p + 2, p + 2 + len(caption)))
  np.testing.assert_array_equal(ex["text_targets"][trained], caption)
  assert not ex["flow_mask"].any() and not ex["exit_mask"].any() and not ex["cond_mask"].any()

  ex = sequences.build_example("text", "a woman squats down", z, tokenizer, BOM, EOM)
  ids = tokenizer.encode("a woman squats down", add_bos=True, add_eos=True)
  np.testing.assert_array_equal(ex["tokens"], ids)
  np.testing.assert_array_equal(ex["text_targets"][:-1], ids[1:])
  assert ex["text_mask"].sum() == len(ids) - 1 and not ex["modality"].any()
  with pytest.raises(ValueError, match="Unknown sequence kind"):
    sequences.build_example("dance", "x", z, tokenizer, BOM, EOM)


def take(it, n):
  return [next(it) for _ in range(n)]


def test_packed_rows_keep_examples_whole(tokenizer, latent_dir):
  it = sequences.make_llamo_loader(config_for(latent_dir), "train", tokenizer, BOM, EOM,
                                   mix={"t2m": 0.5, "m2t": 0.5}, seed=0)
  for batch in take(it, 3):
    assert batch["tokens"].shape == (4, 64) and batch["latents"].shape == (4, 64, C)
    for row in range(4):
      seg, pos = batch["segment_ids"][row], batch["positions"][row]
      ids = [s for s in np.unique(seg) if s > 0]
      assert len(ids) >= 1
      for s in ids:
        where = np.nonzero(seg == s)[0]
        np.testing.assert_array_equal(where, np.arange(where[0], where[0] + len(where)))  # contiguous
        np.testing.assert_array_equal(pos[where], np.arange(len(where)))                   # restart at 0
        assert batch["tokens"][row, where[0]] == tokenizer.bos_id
      pad = seg == 0
      for key in ("text_mask", "flow_mask", "exit_mask", "cond_mask"):
        assert not batch[key][row][pad].any(), key
    assert (batch["text_targets"] < BOM).all()
    # A flow target is always the latent of the next position, inside the same example.
    b, t = np.nonzero(batch["flow_mask"])
    np.testing.assert_array_equal(batch["flow_targets"][b, t], batch["latents"][b, t + 1])
    assert (batch["segment_ids"][b, t] == batch["segment_ids"][b, t + 1]).all()


def test_capacities_bound_rows_and_mix_selects_kinds(tokenizer, latent_dir):
  config = config_for(latent_dir)
  config.model.motion_capacity = 10
  it = sequences.make_llamo_loader(config, "train", tokenizer, BOM, EOM, mix={"t2m": 1.0}, seed=1)
  batches = take(it, 4)
  counts = sequences.row_token_counts(batches)
  assert counts["motion"] <= 10
  for batch in batches:  # T2M only: every example has a [BOM] and a flow target
    for row in range(4):
      n_examples = len([s for s in np.unique(batch["segment_ids"][row]) if s > 0])
      assert (batch["tokens"][row] == BOM).sum() == n_examples
  config.model.motion_capacity = 2
  with pytest.raises(ValueError, match="motion_capacity"):
    next(sequences.make_llamo_loader(config, "train", tokenizer, BOM, EOM, mix={"t2m": 1.0}, seed=1))
  with pytest.raises(ValueError, match="no kind a positive weight"):
    sequences.make_llamo_loader(config_for(latent_dir), "train", tokenizer, BOM, EOM, mix={"t2m": 0.0}, seed=1)


def test_bom_on_the_motion_expert_counts_against_its_buffer(tokenizer, latent_dir):
  """model.bom_expert="motion": each example's [BOM] takes a motion-expert slot, so the packer
  keeps rows within motion_capacity counting it, and an example that fits only without it fails."""
  config = config_for(latent_dir)
  config.model.update(dict(motion_capacity=10, bom_expert="motion"))
  batches = take(sequences.make_llamo_loader(config, "train", tokenizer, BOM, EOM, mix={"t2m": 1.0}, seed=1), 4)
  with_bom = sequences.row_token_counts(batches, bom=BOM)
  assert with_bom["motion"] <= 10 and with_bom["motion"] > sequences.row_token_counts(batches)["motion"]
  config.model.motion_capacity = 8  # max_motion_tokens: fits 8 latents, not 8 latents + [BOM]
  with pytest.raises(ValueError, match="motion_capacity"):
    take(sequences.make_llamo_loader(config, "train", tokenizer, BOM, EOM, mix={"t2m": 1.0}, seed=1), 4)
  config.model.bom_expert = "text"
  take(sequences.make_llamo_loader(config, "train", tokenizer, BOM, EOM, mix={"t2m": 1.0}, seed=1), 4)


def test_global_batch_is_the_same_for_one_or_two_hosts(tokenizer, latent_dir):
  kw = dict(mix={"t2m": 0.8, "m2t": 0.2}, seed=3)
  one = take(sequences.make_llamo_loader(config_for(latent_dir), "train", tokenizer, BOM, EOM, **kw), 2)
  hosts = [take(sequences.make_llamo_loader(config_for(latent_dir), "train", tokenizer, BOM, EOM,
                                            process_index=i, process_count=2, **kw), 2) for i in range(2)]
  for step in range(2):
    for key in one[step]:
      np.testing.assert_array_equal(np.concatenate([h[step][key] for h in hosts]), one[step][key], err_msg=key)


def test_drop_static_skips_slow_clips(tokenizer, latent_dir):
  it = sequences.make_llamo_loader(config_for(latent_dir, batch_size=2), "val", tokenizer, BOM, EOM,
                                   mix={"t2m": 1.0}, seed=0, num_epochs=1, drop_static=True)
  n = sum(len([s for s in np.unique(row) if s > 0]) for b in it for row in b["segment_ids"])
  source = records.open_dataset(latent_dir).data_source("val")
  moving = sum(sequences.root_speed(records.decode(source[i])["attributes"]) >= 0.05 for i in range(len(source)))
  assert 0 < moving < len(source)
  assert n <= moving  # the last partial pack may stay in the packer at the end of the epoch
  assert n >= moving - 2


def test_resume_from_iterator_state(tokenizer, latent_dir):
  def loader():
    return sequences.make_llamo_loader(config_for(latent_dir), "train", tokenizer, BOM, EOM,
                                       mix={"t2m": 0.5, "m2t": 0.5}, seed=5)
  it = loader()
  take(it, 2)
  state = it.get_state()
  expected = take(it, 2)
  resumed = loader()
  resumed.set_state(state)
  for a, b in zip(take(resumed, 2), expected):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert isinstance(it, grain.DatasetIterator)
