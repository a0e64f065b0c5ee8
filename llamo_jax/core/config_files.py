"""Config files (`configs/NAME.py` with `get_config(arg)`): their `PRESET,key=value` args, and
loading one config file from another (configs/ is not a package)."""
from __future__ import annotations

import importlib.util
import pathlib
import types
from typing import Callable, Iterable

import ml_collections


def parse_arg(arg: str | None, name: str, presets: Iterable[str], keys: Iterable[str]
              ) -> tuple[str, dict[str, str]]:
  """`PRESET[,key=value...]` of configs/NAME.py -> (preset, {key: value}).

  The preset may be omitted (`key=value,...` or None): the first of `presets` is used.
  An unknown preset, an unknown key or a pair without "=" raises, naming what is accepted.
  """
  presets, keys = tuple(presets), tuple(keys)
  items = [item for item in (arg or "").split(",") if item]
  preset = presets[0]
  if items and "=" not in items[0]:
    preset = items.pop(0)
  if preset not in presets:
    raise ValueError(f"Unknown configs/{name}.py preset {preset!r}; choose one of {list(presets)}.")
  pairs = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"configs/{name}.py arg {item!r} is not key=value (arg: {arg!r}).")
    if key not in keys:
      raise ValueError(f"Unknown config arg key {key!r} for configs/{name}.py; accepted: {', '.join(keys)}.")
    pairs[key] = value
  return preset, pairs


def split_spec(spec: str) -> tuple[str, str | None]:
  """`configs/NAME.py[:arg]` (as given to --config) -> (file, arg or None)."""
  path, sep, arg = spec.partition(".py:")
  if sep:
    return path + ".py", arg
  return spec, None


def load_module(path: str | pathlib.Path) -> types.ModuleType:
  """The module of a config file (configs/ is not a package), for its get_config and sweep."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Config file {path} not found (expected configs/NAME.py).")
  spec = importlib.util.spec_from_file_location(f"_configs_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling_config(this_file: str, name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of configs/NAME.py, the config file beside `this_file`."""
  path = pathlib.Path(this_file).with_name(f"{name}.py")
  if not path.exists():
    raise FileNotFoundError(f"{path} not found (loaded from {this_file}).")
  return load_module(path).get_config(arg)


def preset_alias(this_file: str, name: str, preset: str) -> Callable[[str | None], ml_collections.ConfigDict]:
  """A `get_config(arg)` for a file that stands for configs/NAME.py:PRESET (arg: more `key=value` pairs)."""
  def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return sibling_config(this_file, name, ",".join(filter(None, (preset, arg))))
  return get_config
