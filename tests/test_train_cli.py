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
