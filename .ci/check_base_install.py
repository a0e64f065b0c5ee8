"""The newcomer's path: with `pip install -e .` alone, every module imports and every program runs.

  python .ci/check_base_install.py

Imports every module of the installed packages (llamo_jax, data_pipelines) and runs
`python -m PROGRAM --help` for every program (a module with a `__main__` guard, or a
package's `__main__.py`). Fails, naming the module and the missing package, when a base
path imports something `install_requires` lacks. A module that needs an extra says so in
EXTRA_ONLY and must then fail to import with an error that names the extra's install
command.
"""
from __future__ import annotations

import concurrent.futures
import importlib
import importlib.util
import os
import pathlib
import pkgutil
import subprocess
import sys
import traceback

PACKAGES = ("llamo_jax", "data_pipelines")
# module -> the extra it needs (documented in its docstring and README).
EXTRA_ONLY: dict[str, str] = {
    # The PyTorch side of the export (llamo_jax/pytorch/__init__.py); layout, motion and
    # tokenizer there import without torch, so the JAX exporter can use layout.
    "llamo_jax.pytorch._torch": "torch",
    "llamo_jax.pytorch.bundle": "torch",
    "llamo_jax.pytorch.model": "torch",
    "llamo_jax.pytorch.sampling": "torch",
    "llamo_jax.pytorch.vae": "torch",
    "llamo_jax.torch_generate": "torch",
}


def modules() -> list[str]:
  names = []
  for package in PACKAGES:
    pkg = importlib.import_module(package)
    names.append(package)
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")]
  return sorted(names)


def is_program(name: str) -> bool:
  module = importlib.util.find_spec(name)
  path = pathlib.Path(module.origin)
  if path.name == "__main__.py":
    return True
  return path.suffix == ".py" and 'if __name__ == "__main__":' in path.read_text()


def check_import(name: str) -> str | None:
  """None when `name` imports as it should, else the reason."""
  try:
    importlib.import_module(name)
  except Exception as e:  # pylint: disable=broad-except  (reported, with the traceback)
    extra = EXTRA_ONLY.get(name)
    if extra and isinstance(e, ImportError) and f"[{extra}]" in str(e):
      return None
    return f"import {name} failed: {e!r}\n{traceback.format_exc(limit=-3)}"
  if name in EXTRA_ONLY:
    return f"{name} is listed as needing the {EXTRA_ONLY[name]!r} extra but imports without it."
  return None


def check_help(program: str) -> str | None:
  module = program.removesuffix(".__main__")
  proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                        timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  # absl prints the help to stdout and exits 1.
  ok = proc.returncode in (0, 1) and proc.stdout.strip() and "Traceback" not in proc.stderr
  if not ok:
    return f"python -m {module} --help exited {proc.returncode}:\n{proc.stderr[-2000:]}"
  return None


def main() -> int:
  names = modules()
  # Programs define absl flags at import, so each is imported in its own process (--help).
  programs = [n for n in names if n not in EXTRA_ONLY and is_program(n)]
  failures = [f for f in map(check_import, sorted(set(names) - set(programs))) if f]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    failures += [f for f in pool.map(check_help, programs) if f]
  print(f"base install: {len(names)} modules imported, {len(programs)} programs ran --help "
        f"({', '.join(p.removesuffix('.__main__') for p in programs)})")
  for failure in failures:
    print("FAIL:", failure, file=sys.stderr)
  if failures:
    print(f"{len(failures)} failures: a base path needs a package that setup.py's install_requires "
          "lacks. Add it there, or move the import to the extra-only feature with an error naming "
          'the extra (pip install -e ".[torch]") and list the module in EXTRA_ONLY.', file=sys.stderr)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
