"""The package's shape: imports run one way, programs on top, no import hidden from a cycle.

Layers, bottom to top (docs/design.md, Layers); a module may import its own layer and
the ones below it, never one above:
  pytorch < core < motion < synthetic < data < models < convert < generation < eval < training < tasks
  < programs (the top-level modules of llamo_jax, and data_pipelines)
Every import counts, also one inside a function. Within a layer, modules must not import
each other in a cycle. An import inside a function is allowed only to defer start-up cost
or order (e.g. matplotlib, jax before the device count is set) and must say so:
`# pylint: disable=g-import-not-at-top  (reason)` on its line, or `disable-next` on the line above.
"""
import ast
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("pytorch", "core", "motion", "synthetic", "data", "models", "convert", "generation", "eval", "training", "tasks")
PROGRAMS = len(LAYERS)


def _modules() -> dict[str, pathlib.Path]:
  files = sorted((REPO / "llamo_jax").rglob("*.py")) + sorted((REPO / "data_pipelines").rglob("*.py"))
  out = {}
  for path in files:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    out[".".join(parts)] = path
  return out


MODULES = _modules()


def layer(module: str) -> int:
  parts = module.split(".")
  if parts[0] == "data_pipelines" or len(parts) == 2 and (REPO / "llamo_jax" / f"{parts[1]}.py").exists():
    return PROGRAMS
  if len(parts) == 1:  # llamo_jax/__init__.py
    return -1
  if parts[1] not in LAYERS:
    raise AssertionError(f"{module}: llamo_jax/{parts[1]}/ is not a known layer; add it to LAYERS here "
                         "and to docs/design.md.")
  return LAYERS.index(parts[1])


def _resolve(name: str) -> str | None:
  """The module of ours an imported name refers to (a module, or a name inside one)."""
  while name:
    if name in MODULES:
      return name
    name = name.rpartition(".")[0]
  return None


def imports(module: str) -> list[tuple[str, ast.stmt, bool]]:
  """(imported module of ours, node, at module level) for every import in `module`."""
  tree = ast.parse(MODULES[module].read_text())
  top = {id(n) for n in tree.body}
  for node in ast.walk(tree):  # imports under `if TYPE_CHECKING`/try at top level count as top
    if isinstance(node, (ast.If, ast.Try)) and id(node) in top:
      top |= {id(n) for n in ast.walk(node)}
  out = []
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
      target = _resolve(name)
      if target and target != module:
        out.append((target, node, id(node) in top))
  return out


def test_every_package_is_a_known_layer():
  for module in MODULES:
    if module.startswith("llamo_jax."):
      layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
  mine = layer(module)
  for target, node, _ in imports(module):
    theirs = layer(target)
    assert theirs <= mine, (f"{module} (line {node.lineno}) imports {target}, a layer above it "
                            f"({LAYERS[mine] if mine < PROGRAMS else 'programs'} < "
                            f"{LAYERS[theirs] if theirs < PROGRAMS else 'programs'}); move the shared code down.")
    if mine == PROGRAMS and theirs == PROGRAMS and not module.startswith("data_pipelines.synthetic"):
      raise AssertionError(f"program {module} imports program {target} (line {node.lineno}); "
                           "move what they share into a library.")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_say_why(module):
  lines = MODULES[module].read_text().splitlines()
  for target, node, at_top in imports(module):
    if at_top:
      continue
    here, above = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
    reason = ("g-import-not-at-top  (" in here) or ("disable-next=g-import-not-at-top  (" in above)
    assert reason, (f"{module} line {node.lineno} imports {target} inside a function without a start-up "
                    "reason; import it at the top (a cycle means the code is in the wrong layer).")


def test_no_import_cycles():
  graph = {m: {t for t, _, _ in imports(m)} for m in MODULES}
  state: dict[str, int] = {}

  def visit(m, path):
    state[m] = 1
    for t in graph[m]:
      if state.get(t) == 1:
        raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
      if t not in state:
        visit(t, path + [t])
    state[m] = 2

  for m in graph:
    if m not in state:
      visit(m, [m])


def test_the_checker_catches_a_violation(tmp_path, monkeypatch):
  """The layering check is not vacuous: a models module importing tasks is reported."""
  bad = tmp_path / "bad.py"
  bad.write_text("from llamo_jax.tasks import llamo\n")
  monkeypatch.setitem(MODULES, "llamo_jax.models.bad", bad)
  with pytest.raises(AssertionError, match="a layer above it"):
    test_imports_run_down_the_layers("llamo_jax.models.bad")


# The PyTorch side runs where JAX is not installed: llamo_jax/pytorch and its program import
# only these (plus the standard library), and of our modules only llamo_jax.pytorch.*.
TORCH_SIDE_ALLOWED = {"torch", "numpy", "safetensors", "sentencepiece", "tokenizers"}
TORCH_SIDE = [m for m in MODULES if m.startswith("llamo_jax.pytorch") or m == "llamo_jax.torch_generate"]


def _third_party_imports(module: str) -> list[tuple[str, int]]:
  out = []
  for node in ast.walk(ast.parse(MODULES[module].read_text())):
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out.append((node.module, node.lineno))
  return out


@pytest.mark.parametrize("module", TORCH_SIDE)
def test_torch_side_never_imports_jax(module):
  for name, line in _third_party_imports(module):
    top = name.split(".")[0]
    if top == "llamo_jax":
      assert name.startswith("llamo_jax.pytorch"), (
          f"{module} (line {line}) imports {name}: the PyTorch side may import only llamo_jax.pytorch.*, "
          "so it runs without JAX.")
    else:
      assert top in TORCH_SIDE_ALLOWED or top in sys.stdlib_module_names or top == "__future__", (
          f"{module} (line {line}) imports {name}; the PyTorch side imports only "
          f"{sorted(TORCH_SIDE_ALLOWED)} and the standard library.")


def test_torch_side_checker_catches_jax(tmp_path, monkeypatch):
  bad = tmp_path / "bad.py"
  bad.write_text("import jax.numpy as jnp\n")
  monkeypatch.setitem(MODULES, "llamo_jax.pytorch.bad", bad)
  with pytest.raises(AssertionError, match="imports jax.numpy"):
    test_torch_side_never_imports_jax("llamo_jax.pytorch.bad")
