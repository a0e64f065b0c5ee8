"""Frozen-dataclass configs built from plain dicts (ml_collections ConfigDicts, config.json).

`from_dict` refuses unknown keys, missing required keys and values of the wrong type
with one message naming the key; `to_dict` gives a JSON-able dict that round-trips.
Structured fields (e.g. a nested dataclass or None) are passed through for the class's
own `__post_init__` to validate and convert.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="FromDict")


def _check(owner: str, name: str, value: Any, hint: Any) -> Any:
  if hint is bool:
    ok = isinstance(value, bool)
  elif hint is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif hint is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    value = float(value) if ok else value
  elif hint is str:
    ok = isinstance(value, str)
  elif typing.get_origin(hint) is tuple:
    ok = isinstance(value, (list, tuple))
    value = tuple(value) if ok else value
  else:
    ok = True
  if not ok:
    raise ValueError(f"{owner}.{name} has type {type(value).__name__} ({value!r}); "
                     f"expected {getattr(hint, '__name__', hint)}.")
  return value


class FromDict:
  """Mixin for frozen dataclasses: `from_dict` with checks, `to_dict` for JSON."""

  @classmethod
  def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
      raise ValueError(f"Unknown {cls.__name__} keys {unknown}; valid keys: {sorted(fields)}.")
    missing = sorted(n for n, f in fields.items() if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and n not in d)
    if missing:
      raise ValueError(f"{cls.__name__} is missing required keys {missing}.")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _check(cls.__name__, name, value, hints[name]) for name, value in d.items()})

  def to_dict(self) -> dict[str, Any]:
    """JSON-able dict (nested dataclasses as dicts, tuples as lists); `from_dict` round-trips."""
    def plain(x):
      if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
      if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
      return x
    return plain(dataclasses.asdict(self))
