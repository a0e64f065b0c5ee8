"""The mark of an error a user can fix (bad input, damaged file, full disk): programs print its
message as one line, without a traceback. Everything else keeps its traceback (real bugs)."""
from __future__ import annotations


class InputError(Exception):
  """Mixed into an error class whose messages name the input at fault and the fix.

  Subclass it together with the builtin it refines, e.g. `class X(InputError, ValueError)`,
  so callers that catch the builtin keep working.
  """
