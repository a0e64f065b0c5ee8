"""SIGTERM (preemption) as a flag the train loop polls at step boundaries.

Programs call `install()` first thing, so a SIGTERM during start-up (data build,
compilation) is not lost: the run then trains to the next step boundary, saves and
exits 0. Only `signal` and `threading` are imported here, so installing is instant.
"""
from __future__ import annotations

import signal
import threading

_EVENT = threading.Event()
_previous: list = []  # the handler `install` replaced, while installed


def _handler(signum, frame):
  del signum, frame
  _EVENT.set()


def install() -> bool:
  """Installs the SIGTERM handler (main thread only); returns whether this call installed it."""
  if _previous or threading.current_thread() is not threading.main_thread():
    return False
  _previous.append(signal.signal(signal.SIGTERM, _handler))
  return True


def uninstall() -> None:
  """Restores the handler `install` replaced and forgets any SIGTERM seen."""
  if _previous:
    signal.signal(signal.SIGTERM, _previous.pop())
  _EVENT.clear()


class PreemptionWatcher:
  """Whether a SIGTERM arrived; on multi-host runs the flags of all hosts are gathered, so every
  host stops at (and saves) the same step."""

  def __init__(self):
    self._installed_here = install()  # a program that installed it first keeps it (and its flag)

  def should_stop(self) -> bool:
    """Whether any host got SIGTERM. Collective on multi-host runs: call it on every host."""
    flag = _EVENT.is_set()
    # pylint: disable-next=g-import-not-at-top  (jax only when polled: importing this module stays instant)
    import jax
    if jax.process_count() > 1:
      # pylint: disable-next=g-import-not-at-top  (as above)
      import numpy as np
      from jax.experimental import multihost_utils
      flag = bool(multihost_utils.process_allgather(np.asarray(flag)).any())
    return flag

  def restore_handler(self) -> None:
    if self._installed_here:
      uninstall()
