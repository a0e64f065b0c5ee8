"""Rotation math: quaternions (w, x, y, z), rotation matrices, axis-angle and 6D.

Every function works on numpy arrays and on jax arrays (the array module is
picked from the input), with arbitrary leading batch dims. Matrices act on
column vectors: v' = R @ v.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # np.ndarray | jax.Array


def _xp(*arrays: Array):
  return jnp if any(isinstance(a, jax.Array) or isinstance(a, jax.core.Tracer) for a in arrays) else np


def quat_normalize(q: Array, eps: float = 1e-12) -> Array:
  xp = _xp(q)
  return q / xp.maximum(xp.linalg.norm(q, axis=-1, keepdims=True), eps)


def quat_mul(a: Array, b: Array) -> Array:
  """Hamilton product a * b (apply b first, then a)."""
  xp = _xp(a, b)
  aw, ax, ay, az = (a[..., i] for i in range(4))
  bw, bx, by, bz = (b[..., i] for i in range(4))
  return xp.stack([aw * bw - ax * bx - ay * by - az * bz,
                   aw * bx + ax * bw + ay * bz - az * by,
                   aw * by - ax * bz + ay * bw + az * bx,
                   aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_conjugate(q: Array) -> Array:
  xp = _xp(q)
  return xp.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def quat_inverse(q: Array) -> Array:
  xp = _xp(q)
  return quat_conjugate(q) / xp.sum(q * q, axis=-1, keepdims=True)


def quat_rotate(q: Array, v: Array) -> Array:
  """Rotates vectors v [...,3] by unit quaternions q [...,4]."""
  xp = _xp(q, v)
  w, u = q[..., :1], q[..., 1:]
  t = 2.0 * xp.cross(u, v)
  return v + w * t + xp.cross(u, t)


def quat_to_matrix(q: Array) -> Array:
  """[...,4] unit quaternions -> [...,3,3] rotation matrices."""
  xp = _xp(q)
  w, x, y, z = (q[..., i] for i in range(4))
  rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
          2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
          2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
  return xp.stack(rows, axis=-1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: Array) -> Array:
  """[...,3,3] rotation matrices -> [...,4] unit quaternions with w >= 0.

  Picks, per matrix, the numerically best of the four Shepperd branches.
  """
  xp = _xp(m)
  m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
  m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
  m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
  candidates = xp.stack([
      xp.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
      xp.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
      xp.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
      xp.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1)], axis=-2)
  traces = xp.stack([m00 + m11 + m22, m00, m11, m22], -1)
  traces = traces - xp.stack([xp.zeros_like(m00), m11 + m22, m00 + m22, m00 + m11], -1)
  best = xp.argmax(traces, axis=-1)
  q = xp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
  q = quat_normalize(q)
  return xp.where(q[..., :1] < 0, -q, q)


def axis_angle_to_quat(aa: Array) -> Array:
  """[...,3] rotation vectors (axis * angle, radians) -> [...,4] quaternions."""
  xp = _xp(aa)
  angle = xp.linalg.norm(aa, axis=-1, keepdims=True)
  half = 0.5 * angle
  # sin(half)/angle -> 0.5 as angle -> 0 (Taylor), without dividing by zero.
  small = angle < 1e-8
  scale = xp.where(small, 0.5 - angle ** 2 / 48.0, xp.sin(half) / xp.where(small, 1.0, angle))
  return xp.concatenate([xp.cos(half), aa * scale], axis=-1)


def quat_to_axis_angle(q: Array) -> Array:
  xp = _xp(q)
  q = xp.where(q[..., :1] < 0, -q, q)
  sin_half = xp.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
  angle = 2.0 * xp.arctan2(sin_half, q[..., :1])
  small = sin_half < 1e-8
  scale = xp.where(small, 2.0, angle / xp.where(small, 1.0, sin_half))
  return q[..., 1:] * scale


def axis_angle_to_matrix(aa: Array) -> Array:
  return quat_to_matrix(axis_angle_to_quat(aa))


def matrix_to_6d(m: Array, convention: str) -> Array:
  """[...,3,3] -> [...,6] in one of two conventions.

  "cols" (HumanML3D): first column then second column, (m00, m10, m20, m01, m11, m21).
  "rows" (272-dim, pytorch3d): first row then second row, (m00, m01, m02, m10, m11, m12).
  """
  xp = _xp(m)
  if convention == "cols":
    return xp.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)
  if convention == "rows":
    return xp.concatenate([m[..., 0, :], m[..., 1, :]], axis=-1)
  raise ValueError(f"6D convention must be 'cols' or 'rows', got {convention!r}")


def sixd_to_matrix(d6: Array, convention: str) -> Array:
  """Inverse of `matrix_to_6d` with Gram-Schmidt, so any 6D vector gives a rotation."""
  xp = _xp(d6)
  if convention not in ("cols", "rows"):
    raise ValueError(f"6D convention must be 'cols' or 'rows', got {convention!r}")
  a1, a2 = d6[..., :3], d6[..., 3:6]
  b1 = a1 / xp.maximum(xp.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
  b2 = a2 - xp.sum(b1 * a2, axis=-1, keepdims=True) * b1
  b2 = b2 / xp.maximum(xp.linalg.norm(b2, axis=-1, keepdims=True), 1e-12)
  b3 = xp.cross(b1, b2)
  return xp.stack([b1, b2, b3], axis=-1 if convention == "cols" else -2)


def quat_between(u: Array, v: Array) -> Array:
  """Shortest-arc quaternion rotating direction u onto direction v ([...,3] each)."""
  xp = _xp(u, v)
  u = u / xp.maximum(xp.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
  v = v / xp.maximum(xp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
  w = 1.0 + xp.sum(u * v, axis=-1, keepdims=True)
  axis = xp.cross(u, v)
  # Opposite vectors: rotate by pi about any axis orthogonal to u.
  ortho = xp.where(xp.abs(u[..., :1]) < 0.9, xp.cross(u, xp.asarray([1.0, 0.0, 0.0])),
                   xp.cross(u, xp.asarray([0.0, 1.0, 0.0])))
  opposite = w < 1e-7
  q = xp.concatenate([xp.where(opposite, 0.0, w), xp.where(opposite, ortho, axis)], axis=-1)
  return quat_normalize(q)


def slerp(q0: Array, q1: Array, t: Array) -> Array:
  """Spherical interpolation from q0 (t=0) to q1 (t=1) along the shorter arc.

  q0, q1: [...,4]. t: a scalar, or an array of the quaternions' batch shape [...]
  (given a trailing axis here), or one that already has the trailing axis
  (t.ndim == q0.ndim, e.g. [...,1]); it broadcasts against the quaternions.
  """
  xp = _xp(q0, q1, t)
  t = xp.asarray(t)
  if t.ndim < q0.ndim:
    t = t[..., None]
  dot = xp.sum(q0 * q1, axis=-1, keepdims=True)
  q1 = xp.where(dot < 0, -q1, q1)
  dot = xp.clip(xp.abs(dot), -1.0, 1.0)
  theta = xp.arccos(dot)
  sin_t = xp.sin(theta)
  small = sin_t < 1e-6
  a = xp.where(small, 1.0 - t, xp.sin((1.0 - t) * theta) / xp.where(small, 1.0, sin_t))
  b = xp.where(small, t, xp.sin(t * theta) / xp.where(small, 1.0, sin_t))
  return quat_normalize(a * q0 + b * q1)


def yaw_quat(angle: Array) -> Array:
  """Rotation by `angle` radians about +Y (up), [...] -> [...,4]."""
  xp = _xp(angle)
  half = 0.5 * xp.asarray(angle)
  zero = xp.zeros_like(half)
  return xp.stack([xp.cos(half), zero, xp.sin(half), zero], axis=-1)
