"""The training entry point's command line: config files, overrides and their errors."""
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_train(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "llamo_jax.train", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_unknown_config_key_is_a_clear_error(tmp_path):
  result = run_train("--config=configs/lm.py:tiny", f"--workdir={tmp_path}", "--config.optimizer.lrr=1")
  assert result.returncode != 0
  assert "lrr" in result.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_wrong_type_override_is_a_clear_error(tmp_path):
  result = run_train("--config=configs/lm.py:tiny", f"--workdir={tmp_path}", "--config.total_steps=many")
  assert result.returncode != 0
  assert "total_steps" in result.stderr


def test_unknown_preset_lists_the_presets(tmp_path):
  result = run_train("--config=configs/lm.py:llama9_7b", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "llama9_7b" in result.stderr and "smollm2_135m" in result.stderr


def _one_sentence(result: subprocess.CompletedProcess) -> str:
  """The error line of a failed run; fails if a traceback was printed."""
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  return result.stderr.strip().splitlines()[-1]


def test_unknown_key_names_the_closest_valid_keys(tmp_path):
  line = _one_sentence(run_train("--config=configs/lm.py:tiny", f"--workdir={tmp_path}", "--config.optimzer.lr=1"))
  assert line == ("train: error: --config.optimzer.lr: the config has no key 'optimzer'; closest valid keys: "
                  "optimizer, tokenizer.")
  line = _one_sentence(run_train("--config=configs/lm.py:tiny", f"--workdir={tmp_path}", "--config.model.n_layer=1"))
  assert "config.model has no key 'n_layer'; closest valid keys: n_layers" in line
  assert not tmp_path.joinpath("config.json").exists()


def test_missing_config_file_is_one_sentence(tmp_path):
  line = _one_sentence(run_train("--config=configs/lm_typo.py:tiny", f"--workdir={tmp_path}"))
  assert line == ("train: error: --config=configs/lm_typo.py:tiny: the config file configs/lm_typo.py does not "
                  "exist; pass an existing configs/NAME.py[:ARG], e.g. --config=configs/lm.py:tiny.")


def test_zero_checkpoint_every_is_one_sentence(tmp_path):
  line = _one_sentence(run_train("--config=configs/lm.py:tiny", f"--workdir={tmp_path / 'run'}",
                                 "--config.checkpoint_every=0"))
  assert line == ("train: error: config.checkpoint_every=0 is out of range: it must be an integer >= 1 (steps "
                  "between checkpoints); pass e.g. --config.checkpoint_every=1.")
  assert not (tmp_path / "run").exists()
