"""`export --format=pytorch` refuses sources it cannot export, with one clear error and nothing written.

(The export itself and its parity: tests/pytorch/test_parity.py; of a real run:
tests/tasks/test_llamo_task.py.)"""
import json
import pathlib
import subprocess
import sys

import pytest
from etils import epath

from fake_gcs import fake_gcs
from llamo_jax import export as export_lib


def _workdir(path, config):
  path.mkdir(parents=True)
  (path / "config.json").write_text(json.dumps(config))
  return path


def test_a_run_of_another_task_is_refused(tmp_path):
  lm = _workdir(tmp_path / "lm", {"task": "lm"})
  with pytest.raises(ValueError, match=r"is a 'lm' run, not a 'llamo' run"):
    export_lib.export(lm, "pytorch", tmp_path / "out")
  assert not (tmp_path / "out").exists()
  with pytest.raises(FileNotFoundError, match="is not a training workdir"):
    export_lib.export(tmp_path / "nothing", "pytorch", tmp_path / "out")


def test_a_missing_vae_workdir_is_named(tmp_path):
  run = _workdir(tmp_path / "llamo", {"task": "llamo", "vae": {"workdir": str(tmp_path / "gone")}})
  with pytest.raises(FileNotFoundError, match=r"config.vae.workdir='.*gone', which is not a training workdir"):
    export_lib.export(run, "pytorch", tmp_path / "out")
  vae = _workdir(tmp_path / "vae", {"task": "lm"})  # exists, but is not a VAE run
  run = _workdir(tmp_path / "llamo2", {"task": "llamo", "vae": {"workdir": str(vae)}})
  with pytest.raises(ValueError, match=r"is a 'lm' run, not a 'motion_vae' run"):
    export_lib.export(run, "pytorch", tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_a_run_and_its_vae_on_gcs_are_read_there(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a gs:// path handled as a local one would be looked up under ./gs:
  with fake_gcs(tmp_path / "bucket"):
    epath.Path("gs://b/vae/config.json").write_text(json.dumps({"task": "motion_vae"}))
    epath.Path("gs://b/llamo/config.json").write_text(json.dumps({"task": "llamo", "vae": {"workdir": "gs://b/vae"}}))
    config = export_lib.SOURCE_CHECKS["pytorch"]("gs://b/llamo")
    assert config.vae.workdir == "gs://b/vae"
    with pytest.raises(FileNotFoundError, match=r"config.vae.workdir='gs://b/gone', which is not a training workdir"):
      epath.Path("gs://b/llamo2/config.json").write_text(
          json.dumps({"task": "llamo", "vae": {"workdir": "gs://b/gone"}}))
      export_lib.export("gs://b/llamo2", "pytorch", "gs://b/out")
  assert not (tmp_path / "bucket" / "gs:" / "b" / "out").exists()


@pytest.mark.slow  # a process importing the whole package (~40 s); the errors themselves are tested above
def test_cli_prints_one_line_error(tmp_path):
  lm = _workdir(tmp_path / "lm", {"task": "lm"})
  proc = subprocess.run([sys.executable, "-m", "llamo_jax.export", f"--checkpoint={lm}", "--format=pytorch",
                         f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=300,
                        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}, cwd=pathlib.Path(__file__).resolve().parents[2])
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "export: error:" in proc.stderr and "not a 'llamo' run" in proc.stderr
