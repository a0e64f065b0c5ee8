"""The one place that imports torch for this package, with the error naming the extra."""
try:
  import torch  # pylint: disable=unused-import
except ImportError as e:  # pragma: no cover - exercised by .ci/check_base_install.py
  raise ImportError('llamo_jax.pytorch needs PyTorch, which the base install lacks: '
                    'pip install -e ".[torch]"') from e
