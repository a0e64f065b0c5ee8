"""Device mesh, logical axis rules, and shardings of a model state.

Mesh axes, outermost first: replica (across slices / DCN), data, fsdp, tensor
(innermost: the fastest interconnect). Model code names array dims with
logical axes (batch, length, embed, heads, kv_heads, head_dim, mlp, vocab,
layers); the rules below map them to mesh axes in this one place, and a config
may override them as a list of (logical, mesh axis | [mesh axes] | None).

A logical axis whose mesh size does not divide the array dim is an error
naming the param and the fix (override the rule to None, or change the mesh);
nothing is silently replicated.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from flax import nnx
from flax.core import spmd as flax_spmd
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("replica", "data", "fsdp", "tensor")

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

DEFAULT_RULES: Rules = (
    ("batch", ("replica", "data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
)


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with axes (replica, data, fsdp, tensor), Auto axis types.

  On one slice (or CPU/GPU) the mesh is laid over the devices' interconnect
  (`jax.make_mesh`). When the devices span several TPU slices (devices carry a
  `slice_index`), `replica` is the axis across slices, over DCN, and the other
  axes stay inside a slice, over ICI (`mesh_utils.create_hybrid_device_mesh`);
  `replica` must then be 1, -1 or the number of slices, and a -1 elsewhere fills
  one slice.

  Args:
    shape: sizes by axis name; absent axes get 1, one axis may be -1 to take
      the remaining devices.
    devices: devices to use (default: all).
  """
  unknown = sorted(set(shape) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"Unknown mesh axes {unknown}; valid axes: {list(MESH_AXES)}.")
  devices = jax.devices() if devices is None else list(devices)
  sizes = {a: int(shape.get(a, 1)) for a in MESH_AXES}
  slices = len({getattr(d, "slice_index", 0) or 0 for d in devices})
  if slices > 1:
    if sizes["replica"] not in (1, -1, slices):
      raise ValueError(f"Mesh shape {dict(shape)}: the devices span {slices} slices and 'replica' "
                       f"is the axis across them, so it must be {slices} (or 1 / -1 to mean that).")
    sizes["replica"] = slices
  _fill(sizes, shape, len(devices))
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if slices == 1:
    return jax.make_mesh(tuple(sizes.values()), MESH_AXES, axis_types=axis_types, devices=devices)
  ici = (1,) + tuple(sizes[a] for a in MESH_AXES[1:])
  dcn = (slices,) + (1,) * (len(MESH_AXES) - 1)
  grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=True)
  return Mesh(grid, MESH_AXES, axis_types=axis_types)


def _fill(sizes: dict[str, int], shape: Mapping[str, int], num_devices: int) -> None:
  """Resolves the one -1 in `sizes` (in place) and checks the sizes cover `num_devices`."""
  fill = [a for a, s in sizes.items() if s == -1]
  if len(fill) > 1 or any(s == 0 or s < -1 for s in sizes.values()):
    raise ValueError(f"Mesh shape {dict(shape)}: sizes must be positive, with at most one -1.")
  known = math.prod(s for s in sizes.values() if s != -1)
  if fill:
    if num_devices % known:
      raise ValueError(f"Mesh shape {dict(shape)}: {num_devices} devices are not divisible "
                       f"by the fixed axes' product {known}.")
    sizes[fill[0]] = num_devices // known
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(f"Mesh shape {sizes} needs {math.prod(sizes.values())} devices, but "
                     f"{num_devices} are available; use -1 on one axis to fill.")


def _normalise_mesh_axes(logical: str, value: Any) -> MeshAxes:
  if value is None:
    return None
  axes = (value,) if isinstance(value, str) else tuple(value)
  bad = [a for a in axes if a not in MESH_AXES]
  if bad or not axes:
    raise ValueError(f"Logical axis rule {logical!r} -> {value!r}: mesh axes must be from "
                     f"{list(MESH_AXES)} (or None to replicate).")
  return axes[0] if len(axes) == 1 else axes


def rules_from_config(overrides: Iterable[Sequence[Any]] | None) -> Rules:
  """DEFAULT_RULES with config overrides [(logical, mesh axes or None), ...] applied.

  An override replaces the default for its logical name; new logical names
  are appended.
  """
  rules = dict(DEFAULT_RULES)
  for pair in overrides or ():
    if isinstance(pair, str) or len(pair) != 2:
      raise ValueError(f"Logical axis rule {pair!r} must be a pair (logical name, mesh axes).")
    logical, value = pair
    rules[str(logical)] = _normalise_mesh_axes(logical, value)
  return tuple(rules.items())


def logical_to_spec(logical_axes: Sequence[str | None], rules: Rules = DEFAULT_RULES
                    ) -> PartitionSpec:
  """Maps logical axis names (None = replicated dim) to a PartitionSpec."""
  table = dict(rules)
  spec, used = [], set()
  for name in logical_axes:
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise ValueError(f"Logical axis {name!r} has no sharding rule; known: {sorted(table)}. "
                       "Add one with config.logical_axis_rules.")
    mesh_axes = table[name]
    flat = () if mesh_axes is None else ((mesh_axes,) if isinstance(mesh_axes, str) else mesh_axes)
    if used & set(flat):
      raise ValueError(f"Logical axes {tuple(logical_axes)} map mesh axes {sorted(used & set(flat))} "
                       "to two dims of one array; fix the logical axis rules.")
    used |= set(flat)
    spec.append(mesh_axes)
  return PartitionSpec(*spec)


def _checked_sharding(path: str, shape: Sequence[int], logical_axes: Sequence[str | None],
                      mesh: Mesh, rules: Rules) -> NamedSharding:
  if len(logical_axes) != len(shape):
    raise ValueError(f"{path}: logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}.")
  spec = logical_to_spec(logical_axes, rules)
  for dim, logical, mesh_axes in zip(shape, logical_axes, spec):
    if mesh_axes is None:
      continue
    flat = (mesh_axes,) if isinstance(mesh_axes, str) else mesh_axes
    missing = [a for a in flat if a not in mesh.shape]
    if missing:
      raise ValueError(f"{path}: rule {logical!r} -> {mesh_axes!r} names mesh axes {missing} "
                       f"absent from the mesh {dict(mesh.shape)}; build it with make_mesh.")
    size = math.prod(mesh.shape[a] for a in flat)
    if dim % size:
      raise ValueError(
          f"{path} {tuple(shape)}: dim {logical!r}={dim} is not divisible by mesh axes "
          f"{mesh_axes!r} of size {size}. Change the mesh or override the rule, e.g. "
          f"config.logical_axis_rules=[({logical!r}, None)] to replicate it.")
  return NamedSharding(mesh, spec)


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
  """NamedShardings for every leaf of a (abstract) state, same tree structure.

  Variables with `out_sharding` logical names are sharded by the rules; other
  Variables (RNG keys, counters) and plain arrays are replicated. A Param
  without logical names is an error: every parameter must say how it shards.
  """
  def one(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator=".")
    if isinstance(leaf, nnx.Variable):
      axes = leaf.get_metadata().get("out_sharding", None)
      if axes:
        return leaf.replace(_checked_sharding(name, leaf.shape, axes, mesh, rules))
      if isinstance(leaf, nnx.Param):
        raise ValueError(f"Param {name} {tuple(leaf.shape)} has no logical axis names; create "
                         "it with nnx.Param(value, out_sharding=(...), eager_sharding=False).")
      return leaf.replace(NamedSharding(mesh, PartitionSpec()))
    return NamedSharding(mesh, PartitionSpec())

  return jax.tree_util.tree_map_with_path(
      one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[None]:
  """Makes `mesh` and `rules` current: `constrain` hints apply inside jit, and
  nnx.eval_shape maps logical names through `rules`. Trace steps inside it."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    yield


def active_rules() -> Rules:
  """Rules of the enclosing `nnx.logical_axis_rules(...)` context, else DEFAULT_RULES."""
  return tuple(flax_spmd.get_logical_axis_rules()) or DEFAULT_RULES


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """Hints the sharding of an activation by logical axis names.

  A no-op unless a mesh is active (`jax.set_mesh`); rules come from
  `active_rules()`. Being a hint, a mesh axis that does not divide its dim
  (e.g. batch 1 while decoding) is left out rather than raising.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.axis_names:
    return x
  spec = []
  for dim, mesh_axes in zip(x.shape, logical_to_spec(logical_axes, active_rules())):
    flat = () if mesh_axes is None else ((mesh_axes,) if isinstance(mesh_axes, str) else mesh_axes)
    flat = tuple(a for a in flat if a in mesh.axis_names)
    size = math.prod(mesh.shape[a] for a in flat)
    spec.append(flat if flat and dim % size == 0 else None)
  return jax.lax.with_sharding_constraint(x, PartitionSpec(*spec))


def abstract_state(ctor: Callable[[], nnx.Module], mesh: Mesh | None = None,
                   rules: Rules = DEFAULT_RULES) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state of ShapeDtypeStructs) of `ctor()` without allocating it.

  With a mesh, each ShapeDtypeStruct carries its NamedSharding (e.g. as the
  target of an orbax restore straight into the sharded layout).
  """
  # jax.eval_shape, not nnx.eval_shape: the latter reads logical names as mesh
  # axes under an active mesh. The graphdef is static, so it comes back as is.
  graphdef, state = jax.eval_shape(lambda: nnx.split(ctor()))
  if mesh is not None:
    shardings = state_shardings(state, mesh, rules)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                         state, shardings)
  return graphdef, state


def create_sharded(ctor: Callable[[], nnx.Module], mesh: Mesh, rules: Rules = DEFAULT_RULES
                   ) -> nnx.Module:
  """Builds `ctor()` with every array created directly in its sharding.

  eval_shape(ctor) -> state_shardings -> jax.jit(ctor, out_shardings); no
  device ever holds the unsharded model.
  """
  graphdef, abstract = abstract_state(ctor)
  shardings = state_shardings(abstract, mesh, rules)
  state = jax.jit(lambda: nnx.state(ctor()), out_shardings=shardings)()
  return nnx.merge(graphdef, state)


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
  """Sharding of a batch array: leading dim over the 'batch' rule, rest replicated."""
  return NamedSharding(mesh, logical_to_spec(("batch",), rules))


def _batch_mesh_axes(mesh: Mesh, rules: Rules) -> tuple[str, ...]:
  axes = dict(rules).get("batch")
  flat = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
  return tuple(a for a in flat if a in mesh.shape)


def batch_shards(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> int:
  """How many ways the `batch` rule splits a batch over `mesh` (the data-parallel devices)."""
  return math.prod(mesh.shape[a] for a in _batch_mesh_axes(mesh, rules))


def check_global_batch(global_batch: int, mesh: Mesh, rules: Rules = DEFAULT_RULES,
                       grad_accum_steps: int = 1) -> None:
  """Raises one clear error (before any compile) unless every microbatch of a global batch
  splits evenly over the data-parallel devices."""
  shards = batch_shards(mesh, rules)
  step = shards * grad_accum_steps
  if global_batch > 0 and global_batch % step == 0:
    return
  how = " x ".join(f"{a}={mesh.shape[a]}" for a in _batch_mesh_axes(mesh, rules)) or "none"
  accum = (f" in {grad_accum_steps} microbatches (config.grad_accum_steps)"
           if grad_accum_steps > 1 else "")
  nearest = sorted({max(step, global_batch // step * step), (global_batch // step + 1) * step})
  raise ValueError(
      f"The global batch of {global_batch} (config.data.batch_size) does not split evenly{accum} "
      f"over the {shards} data-parallel devices (mesh {how}): use a multiple of {step} "
      f"(e.g. {' or '.join(map(str, nearest))}), or change config.mesh / config.grad_accum_steps.")
