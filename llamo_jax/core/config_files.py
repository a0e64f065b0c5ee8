"""Config files (`configs/NAME.py` with `get_config(arg)`): their `PRESET,key=value` args,
loading one config file from another (configs/ is not a package), and the programs' `--config`
flag parser that turns a bad config file or override into one sentence."""
from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
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


def load_config_spec(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a `--config` value `PATH[:ARG]`, loaded without command-line overrides."""
  path, arg = split_spec(spec)
  return load_module(path).get_config(arg or None)


def unknown_key_message(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  """None if `dotted` (e.g. "optimizer.lr") names a key of `config`; else which part is unknown and
  the closest valid keys at that level."""
  node, walked = config, []
  for part in dotted.split("."):
    keys = list(node.keys()) if isinstance(node, (ml_collections.ConfigDict, dict)) else []
    if part not in keys:
      where = "config." + ".".join(walked) if walked else "the config"
      close = difflib.get_close_matches(part, keys, n=3, cutoff=0.5)
      if close:
        return f"{where} has no key {part!r}; closest valid keys: {', '.join(close)}"
      return f"{where} has no key {part!r}; valid keys: {', '.join(sorted(keys)) or '(none)'}"
    node, walked = node[part], walked + [part]
  return None


def _config_flag_error(argv: list[str], name: str, error: Exception) -> str:
  """One sentence for a `--NAME=configs/...` flag (or its `--NAME.x=v` overrides) that failed to load."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)
  overrides = [a[len(name) + 3:].split("=", 1)[0] for a in argv if a.startswith(f"--{name}.")]
  if spec is not None:
    try:
      base = load_config_spec(spec)
    except FileNotFoundError:
      return (f"--{name}={spec}: the config file {spec.partition(':')[0]} does not exist; pass an existing "
              f"configs/NAME.py[:ARG], e.g. --{name}=configs/lm.py:tiny.")
    except Exception as e:  # pylint: disable=broad-except  (reported below with the original error)
      return f"--{name}={spec}: the config file fails to load: {type(e).__name__}: {e}"
    for dotted in overrides:
      problem = unknown_key_message(base, dotted)
      if problem:
        return f"--{name}.{dotted}: {problem}."
  detail = str(error).strip().splitlines()
  return f"--{name}: {detail[-1] if detail else type(error).__name__}"


def parse_flags_with_config(argv: list[str], names: Iterable[str] = ("config",)) -> list[str]:
  """An absl `app.run(..., flags_parser=...)` for programs with config-file flags.

  A missing config file, an unknown override key or a bad override value exits with one
  sentence naming the flag (and the closest valid keys) instead of a traceback.
  """
  # pylint: disable-next=g-import-not-at-top  (absl is only needed by programs)
  from absl import app, flags
  program = pathlib.Path(argv[0]).stem if argv else "program"
  try:
    rest = app.parse_flags_with_usage(argv)
    for name in names:  # config files load lazily: load them now, inside this handler
      value = flags.FLAGS[name].value
      if value is not None:
        getattr(value, "keys")  # a config that failed to load raises its error on any attribute
  except (AttributeError, KeyError, OSError, TypeError, ValueError) as e:
    name = next((n for n in names if any(a.startswith(f"--{n}") for a in argv)), tuple(names)[0])
    sys.exit(f"{program}: error: {_config_flag_error(list(argv), name, e)}")
  return rest
