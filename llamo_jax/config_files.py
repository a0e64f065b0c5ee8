"""Loading `configs/NAME.py` files from other config files (configs/ is not a package)."""
from __future__ import annotations

import importlib.util
import pathlib

import ml_collections


def sibling_config(this_file: str, name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of configs/NAME.py, the config file beside `this_file`."""
  path = pathlib.Path(this_file).with_name(f"{name}.py")
  if not path.exists():
    raise FileNotFoundError(f"{path} not found (loaded from {this_file}).")
  spec = importlib.util.spec_from_file_location(f"_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
