"""The one place that imports torch for this package, with the error naming the extra."""
try:
  import torch  # pylint: disable=unused-import
  import safetensors.torch as safetensors_torch  # pylint: disable=unused-import  (imports torch)
except ImportError as e:  # exercised by .ci/check_base_install.py (a venv without the extra)
  raise ImportError('llamo_jax.pytorch needs PyTorch, which the base install lacks: '
                    'pip install -e ".[torch]"') from e
