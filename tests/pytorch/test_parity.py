"""JAX vs the exported PyTorch LLaMo on a tiny random model made here: forward, flow head,
VAE, features -> joints, tokenizer, a whole generation with the same noise, captioning,
and the export's errors."""
import dataclasses
import json
import shutil

import pytest

torch = pytest.importorskip("torch", reason="the PyTorch export needs the torch extra: pip install -e \".[torch]\"")

from flax import nnx  # pylint: disable=g-import-not-at-top  (after the importorskip above)
import jax
import jax.numpy as jnp
import numpy as np

from llamo_jax.convert import torch_export
from llamo_jax.data import sequences
from llamo_jax.data import text as text_data
from llamo_jax.data.tokenizer import Tokenizer
from llamo_jax.generation import captioning
from llamo_jax.generation import decode
from llamo_jax.generation import text_to_motion
from llamo_jax.models import flow_head as flow_lib
from llamo_jax.models import motion_vae as vae_lib
from llamo_jax.models import presets
from llamo_jax.models.llamo import LLaMo, LLaMoConfig, bom_id, eom_id
from llamo_jax.motion import representation as representation_lib
from llamo_jax.pytorch import bundle as bundle_lib
from llamo_jax.pytorch import model as torch_model
from llamo_jax.pytorch import motion as torch_motion
from llamo_jax.pytorch import sampling as torch_sampling
from helpers import run_without_jax

# GQA 4/2 heads, Llama-3 rope scaling, untied head; the vocabulary is the test tokenizer's.
TINY = dataclasses.replace(presets.get_preset("tiny"), vocab_size=320)
# [BOM] on the motion expert (LLaMoConfig.bom_expert), so routing by token is checked too.
CFG = LLaMoConfig(llama=TINY, latent_dim=4, flow_width=32, flow_depth=2, bom_expert="motion")
VAE_CFG = vae_lib.MotionVAEConfig(input_dim=263, latent_dim=4, width=32, depth=2, activation="gelu")
V, C, BOM, EOM = TINY.vocab_size, CFG.latent_dim, bom_id(CFG), eom_id(CFG)
SAMPLING = dict(max_latents=6, cfg_scale=2.5, flow_steps=3, method="heun", temperature=0.8,
                exit_threshold=0.6, max_caption_tokens=6)
LINES = ["a person walks forward", "someone jumps in place", "the man waves his right hand"] * 4


def _random_module(make, seed, scale):
  """The module `make()` builds, every param drawn here: scale * N(0,1), norm scales 1 + that.

  Abstract construction + numpy draws (eager init costs ~20 CPU s at this size); the
  zero-initialised flow/exit/modulation layers become random too, so no part of the
  comparison is trivially 0.
  """
  module = nnx.eval_shape(make)
  state = nnx.state(module, nnx.Param)
  flat = state.flat_state()
  rng = np.random.default_rng(seed)
  values = {path: (path[-1] == "scale") + scale * rng.standard_normal(v.get_value().shape).astype(np.float32)
            for path, v in flat}
  nnx.update(module, nnx.State.from_flat_path({p: jnp.asarray(v, jnp.float32) for p, v in values.items()}))
  return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  model = _random_module(lambda: LLaMo(CFG, rngs=nnx.Rngs(0)), 1, 0.1)
  vae = _random_module(lambda: vae_lib.MotionVAE(VAE_CFG, rngs=nnx.Rngs(2)), 3, 0.05)
  root = tmp_path_factory.mktemp("export")
  tokenizer = Tokenizer.load(text_data.train_sentencepiece(
      LINES + list(sequences.T2M_TEMPLATES) + list(sequences.M2T_TEMPLATES), V, root / "sp"))
  assert tokenizer.vocab_size == V
  rng = np.random.default_rng(0)
  stats = dict(feature_mean=rng.normal(size=263).astype(np.float32) * 0.1,
               feature_std=rng.uniform(0.5, 1.5, 263).astype(np.float32),
               latent_mean=rng.normal(size=C).astype(np.float32),
               latent_std=rng.uniform(0.5, 1.5, C).astype(np.float32))
  out = root / "out"
  out.mkdir()
  torch_export.write_export(out, model, vae, tokenizer, representation="hml263", fps=20,
                            sampling=SAMPLING, source="test", **stats)
  return dict(model=model, vae=vae, tokenizer=tokenizer, stats=stats, dir=out,
              bundle=bundle_lib.load(out))


def _t(x):
  return torch.as_tensor(np.asarray(x))


def test_forward_parity_every_position_and_kv_cache(setup):
  """Two packed segments, text + [BOM] + motion latents + [EOM]: h and text logits at every
  position agree to 1e-4; prefill + one cached step equals the full forward."""
  rng = np.random.default_rng(1)
  t = 24
  tokens = rng.integers(0, V, (2, t)).astype(np.int32)
  modality = np.zeros((2, t), np.int32)
  modality[:, 6:12] = 1
  modality[1, 17:21] = 1
  tokens[:, 5], tokens[:, 12], tokens[1, 16], tokens[1, 21] = BOM, EOM, BOM, EOM
  latents = rng.normal(size=(2, t, C)).astype(np.float32) * (modality[..., None] == 1)
  segment_ids = np.ones((2, t), np.int32)
  segment_ids[1, 14:] = 2
  positions = np.tile(np.arange(t, dtype=np.int32), (2, 1))
  positions[1, 14:] -= 14
  logits, h, _ = setup["model"](jnp.asarray(tokens), jnp.asarray(latents), jnp.asarray(modality),
                                jnp.asarray(positions), jnp.asarray(segment_ids))
  tm = setup["bundle"].model
  with torch.no_grad():
    t_logits, t_h, _ = tm(_t(tokens).long(), _t(latents), _t(modality).long(), _t(positions).long(),
                          _t(segment_ids).long())
  np.testing.assert_allclose(t_h.numpy(), np.asarray(h), atol=1e-4, rtol=0)
  np.testing.assert_allclose(t_logits.numpy(), np.asarray(logits), atol=1e-4, rtol=0)
  assert np.abs(np.asarray(logits)).max() > 0.1  # a comparison of something non-trivial
  with torch.no_grad():  # prefill t-1 tokens, then the last one through the cache
    cache = tm.init_cache(2)
    args = [_t(x).long() if x.dtype != np.float32 else _t(x) for x in
            (tokens, latents, modality, positions, segment_ids)]
    tm(*[a[:, :-1] for a in args], cache=cache)
    step_logits, step_h, _ = tm(*[a[:, -1:] for a in args], cache=cache)
  np.testing.assert_allclose(step_h[:, 0].numpy(), np.asarray(h)[:, -1], atol=1e-4, rtol=0)


def test_flow_head_velocity_and_ode_parity(setup):
  head, t_head = setup["model"].flow_head, setup["bundle"].model.flow_head
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 5, C)).astype(np.float32)
  t = rng.uniform(size=(3, 5)).astype(np.float32)
  h = rng.normal(size=(3, 5, TINY.dim)).astype(np.float32)
  with torch.no_grad():
    v = t_head(_t(x), _t(t), _t(h)).numpy()
  np.testing.assert_allclose(v, np.asarray(head(jnp.asarray(x), jnp.asarray(t), jnp.asarray(h))),
                             atol=1e-4, rtol=0)
  assert np.abs(v).max() > 0.1
  hu = rng.normal(size=h.shape).astype(np.float32)
  for method in ("euler", "heun"):
    want = flow_lib.integrate_head(head, jnp.asarray(h), jnp.asarray(x), h_uncond=jnp.asarray(hu),
                                   cfg_scale=3.0, steps=4, method=method)
    with torch.no_grad():
      got = torch_model.integrate_head(t_head, _t(h), _t(x), h_uncond=_t(hu), cfg_scale=3.0, steps=4,
                                       method=method)
    np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-4, rtol=0)


def test_vae_decode_and_encode_parity(setup):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(2, 5, C)).astype(np.float32)
  want = np.asarray(setup["vae"].decode(jnp.asarray(z)))
  with torch.no_grad():
    got = setup["bundle"].vae.decode(_t(z)).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  x = rng.normal(size=(2, 18, 263)).astype(np.float32)  # 18 frames: the end is padded to 20
  with torch.no_grad():
    got = setup["bundle"].vae.encode(_t(x)).numpy()
  np.testing.assert_allclose(got, np.asarray(setup["vae"].encode(jnp.asarray(x))), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["hml263", "mm272"])
def test_features_to_joints_parity(name):
  rep = representation_lib.get_representation(name)
  f = np.random.default_rng(4).normal(size=(30, rep.dim)).astype(np.float32) * 0.3
  np.testing.assert_allclose(torch_motion.to_joints(f, name), rep.to_joints(f), atol=1e-5, rtol=0)


def test_tokenizer_matches_data_tokenizer(setup):
  tok = setup["bundle"].tokenizer
  text = "Generate a motion: a person walks forward and waves."
  ids = setup["tokenizer"].encode(text, add_bos=True)
  assert tok.encode(text) == ids
  assert tok.decode(ids + [setup["tokenizer"].eos_id]) == setup["tokenizer"].decode(ids)
  assert setup["bundle"].t2m_prompt("a person walks forward") == list(
      sequences.t2m_prompt(setup["tokenizer"], "a person walks forward", BOM))


@pytest.mark.parametrize("cfg_scale", [2.5, pytest.param(None, marks=pytest.mark.slow)])
def test_generation_with_the_same_noise_matches(setup, cfg_scale):
  """A whole generation (prefill, ODE + CFG, exit head, KV cache, VAE decode, joints) with the
  JAX noise fed to the PyTorch sampler agrees to 1e-3."""
  model, b = setup["model"], setup["bundle"]
  prompts = [b.t2m_prompt("a person walks forward"), b.t2m_prompt("someone jumps")]
  rng = jax.random.key(7)
  kw = dict(max_latents=6, cfg_scale=cfg_scale, flow_steps=3, method="heun", temperature=0.8,
            exit_threshold=0.6)
  latents, lengths = text_to_motion.generate_motion(model, [np.asarray(p, np.int32) for p in prompts],
                                                    rng, **kw)
  noise = text_to_motion.sampling_noise(rng, 2, 6, C)
  t_latents, t_lengths = torch_sampling.generate_motion(b.model, prompts, noise=noise, **kw)
  np.testing.assert_array_equal(t_lengths.numpy(), np.asarray(lengths))
  np.testing.assert_allclose(t_latents.numpy(), np.asarray(latents), atol=1e-3, rtol=0)
  assert np.abs(np.asarray(latents)).max() > 0.1
  s = setup["stats"]
  want = decode.decode_latents(setup["vae"], np.asarray(latents), np.asarray(lengths),
                               s["latent_mean"], s["latent_std"])
  got = b.decode_latents(t_latents, t_lengths.tolist())
  rep = representation_lib.get_representation("hml263")
  for w, g in zip(want, got):
    w = w * s["feature_std"] + s["feature_mean"]
    np.testing.assert_allclose(g, w, atol=1e-3, rtol=0)
    np.testing.assert_allclose(torch_motion.to_joints(g, "hml263"), rep.to_joints(w), atol=1e-3, rtol=0)


def test_captioning_matches(setup):
  model, b = setup["model"], setup["bundle"]
  rng = np.random.default_rng(5)
  z = rng.normal(size=(2, 4, C)).astype(np.float32)
  prefix = b.m2t_prompt()
  eos = setup["tokenizer"].eos_id
  want = captioning.caption_motion(model, z, np.array([4, 2]), np.asarray(prefix, np.int32),
                                   eos_id=eos, max_new_tokens=7)
  got = torch_sampling.caption_motion(b.model, z, [4, 2], prefix, eos_id=eos, max_new_tokens=7)
  assert got == want and len(got[0]) > 0


def test_export_errors(setup, tmp_path):
  fsq = nnx.eval_shape(lambda: vae_lib.MotionVAE(vae_lib.MotionVAEConfig(
      input_dim=263, latent_dim=4, width=8, depth=1, quantizer="fsq"), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="quantizer='fsq'; the PyTorch export supports the continuous"):
    torch_export.write_export(tmp_path, setup["model"], fsq, setup["tokenizer"], representation="hml263",
                              fps=20, sampling=SAMPLING, **setup["stats"])
  bad = tmp_path / "bad"
  shutil.copytree(setup["dir"], bad)
  config = json.loads((bad / "config.json").read_text())
  config["llamo"]["split"] = "attention"
  (bad / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="llamo.split='attention' is not supported by the PyTorch LLaMo"):
    bundle_lib.load(bad)
  llamo = json.loads((setup["dir"] / "config.json").read_text())["llamo"]
  assert llamo["bom_expert"] == "motion"
  with pytest.raises(ValueError, match="llamo.bom_expert='both' is not supported"):
    torch_model.LLaMoConfig.from_dict({**llamo, "bom_expert": "both"})
  del llamo["bom_expert"]  # an export from before the field: [BOM] ran the text expert
  assert torch_model.LLaMoConfig.from_dict(llamo).bom_expert == "text"
  config["format"] = "something"
  (bad / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="is not a llamo_pytorch v1 export"):
    bundle_lib.load(bad)
  with pytest.raises(FileNotFoundError, match="is not an exported LLaMo folder"):
    bundle_lib.load(tmp_path / "nothing")


def test_bvh_matches_the_jax_writer(setup, tmp_path):
  from llamo_jax.motion import files as motion_files  # pylint: disable=g-import-not-at-top  (scipy; this test only)
  from llamo_jax.motion.bvh import format as bvh_format  # pylint: disable=g-import-not-at-top  (this test only)
  rep = representation_lib.get_representation("hml263")
  joints = rep.to_joints(np.random.default_rng(6).normal(size=(12, 263)).astype(np.float32) * 0.3)
  setup["bundle"].write_bvh(tmp_path / "t.bvh", joints)
  got = bvh_format.read_bvh(tmp_path / "t.bvh")
  want = motion_files.to_bvh(joints, "joints", 20.0)
  assert [j.name for j in got.joints] == [j.name for j in want.joints]
  assert [j.channels for j in got.joints] == [j.channels for j in want.joints]
  np.testing.assert_allclose([j.offset for j in got.joints], [j.offset for j in want.joints], atol=1e-5)
  assert got.frame_time == pytest.approx(want.frame_time)
  np.testing.assert_allclose(got.values, want.values, atol=1e-3)


def _run_no_jax(*args, cwd):
  return run_without_jax("llamo_jax.torch_generate", *args, cwd=cwd)


def test_torch_generate_runs_without_jax(setup, tmp_path):
  """The command line generates (npy + features + bvh) and captions with jax unimportable."""
  proc = _run_no_jax(f"--model={setup['dir']}", "--prompt=a person walks forward", "--seed=3",
                     "--cfg_scale=2.0", "--flow_steps=2", f"--out={tmp_path / 'walk.bvh'}", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  joints = np.load(tmp_path / "walk.npy")
  features = np.load(tmp_path / "walk_features.npy")
  assert joints.ndim == 3 and joints.shape[1:] == (22, 3) and np.isfinite(joints).all()
  assert features.shape == (joints.shape[0], 263) and joints.shape[0] % 4 == 0
  np.testing.assert_allclose(joints, torch_motion.to_joints(features, "hml263"), atol=1e-5)
  assert (tmp_path / "walk.bvh").read_text().startswith("HIERARCHY")
  summary = json.loads(proc.stdout)
  assert summary["t2m"]["frames"] == joints.shape[0]
  proc = _run_no_jax(f"--model={setup['dir']}", f"--motion={tmp_path / 'walk_features.npy'}", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert isinstance(json.loads(proc.stdout)["caption"]["caption"], str)
  # Bad input: one clear line, no traceback.
  proc = _run_no_jax(f"--model={setup['dir']}", f"--motion={tmp_path / 'walk.npy'}", cwd=tmp_path)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "the export's VAE reads hml263 features [T, 263]" in proc.stderr
  proc = _run_no_jax(f"--model={tmp_path}", "--prompt=x", cwd=tmp_path)
  assert proc.returncode == 2 and "is not an exported LLaMo folder" in proc.stderr
