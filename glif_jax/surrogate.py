"""The spike nonlinearity: exact Heaviside forward, surrogate derivative backward (the GLIF paper's neuron equations).

A surrogate is a derivative shape ``d(x, width)`` of the membrane distance to threshold
``x = u - v_th``. Four shapes are built in and a user can register their own::

    register("gaussian", lambda x, width: jnp.exp(-(x / width) ** 2) / (width * jnp.sqrt(jnp.pi)), 0.5)
    spikes = heaviside(u - v_th, get("gaussian"))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from glif_jax.errors import OptionError, check_number

Derivative = Callable[[jax.Array, float], jax.Array]


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative with its width/sharpness parameter (hashable, jit-static)."""

    name: str
    derivative: Derivative
    width: float

    def __call__(self, x: jax.Array) -> jax.Array:
        """Surrogate dH/dx at ``x`` (same shape and dtype as ``x``)."""
        return self.derivative(x, self.width).astype(x.dtype)


def rectangular(x: jax.Array, width: float) -> jax.Array:
    """The paper's window: ``1/width`` where ``|x| < width/2``, else 0 (width 1 gives 1 on |x| < 0.5)."""
    return jnp.where(jnp.abs(x) < width / 2, 1.0 / width, 0.0).astype(x.dtype)


def sigmoid(x: jax.Array, sharpness: float) -> jax.Array:
    """``k * s(kx) * (1 - s(kx))`` with ``s`` the logistic function and ``k = sharpness``."""
    return sharpness * jax.nn.sigmoid(sharpness * x) * jax.nn.sigmoid(-sharpness * x)  # 1 - s(z) = s(-z), stable


def arctan(x: jax.Array, sharpness: float) -> jax.Array:
    """``(k/2) / (1 + (pi/2 * k * x)^2)`` with ``k = sharpness``."""
    return (sharpness / 2) / (1 + (math.pi / 2 * sharpness * x) ** 2)


def triangle(x: jax.Array, width: float) -> jax.Array:
    """``max(0, 1 - |x|/width) / width`` (width 1 gives ``max(0, 1 - |x|)``)."""
    return jnp.maximum(0.0, 1 - jnp.abs(x) / width) / width


_REGISTRY: dict[str, tuple[Derivative, float]] = {
    "rectangular": (rectangular, 1.0),
    "sigmoid": (sigmoid, 4.0),
    "arctan": (arctan, 2.0),
    "triangle": (triangle, 1.0),
}


def register(name: str, derivative: Derivative, default_width: float) -> None:
    """Adds a surrogate shape ``derivative(x, width) -> dH/dx`` under ``name``."""
    if not callable(derivative):
        raise TypeError(f"register: derivative must be callable, got {type(derivative).__name__}")
    _REGISTRY[name] = (derivative, float(default_width))


def names() -> tuple[str, ...]:
    """The registered surrogate names."""
    return tuple(_REGISTRY)


def get(surrogate: str | Surrogate = "rectangular", width: float | None = None) -> Surrogate:
    """Looks a surrogate up by name; ``width`` overrides its default width/sharpness."""
    if isinstance(surrogate, Surrogate):
        return surrogate if width is None else dataclasses.replace(surrogate, width=float(width))
    if surrogate not in _REGISTRY:
        raise OptionError("surrogate", f"unknown name {surrogate!r}; expected one of {sorted(_REGISTRY)}")
    derivative, default_width = _REGISTRY[surrogate]
    width = default_width if width is None else check_number("surrogate_width", width, minimum=0.0, inclusive=False)
    return Surrogate(surrogate, derivative, float(width))


def _heaviside_forward(x: jax.Array, surrogate: Surrogate, inclusive: bool) -> jax.Array:
    return ((x >= 0) if inclusive else (x > 0)).astype(x.dtype)


def _heaviside_fwd(x, surrogate, inclusive):
    return _heaviside_forward(x, surrogate, inclusive), x


def _heaviside_bwd(surrogate, inclusive, x, grad_spikes):
    return (grad_spikes * surrogate(x),)


_heaviside = jax.custom_vjp(_heaviside_forward, nondiff_argnums=(1, 2))
_heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


def heaviside(x: jax.Array, surrogate: str | Surrogate = "rectangular", *, inclusive: bool = False) -> jax.Array:
    """``H(x)`` (1 where ``x > 0``, else 0; H(0) = 0) whose gradient is the surrogate's.

    ``inclusive=True`` fires at zero too (1 where ``x >= 0``), as spikingjelly's neurons do.
    """
    return _heaviside(x, get(surrogate), bool(inclusive))
