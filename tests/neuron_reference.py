"""An independent float64 NumPy reference of the GLIF paper's neuron equations, written from the equations.

Forward: the leak / integration / reset / fire lines of the GLIF paper's neuron equations as printed, with the raw
gate and primitive values. Backward: a hand-written backpropagation through time using the
partial derivatives of those same lines (no coefficient form, no autodiff).
"""

from __future__ import annotations

import math

import numpy as np

GATES = ("alpha", "beta", "gamma")
PRIMITIVES = ("tau", "lam", "v_th", "v_re", "cond")
KIND_NAMES = {"glif": GATES + PRIMITIVES, "glif_f": PRIMITIVES, "lif": ("tau", "v_th")}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


SURROGATES = {
    "rectangular": (lambda x, w: np.where(np.abs(x) < w / 2, 1.0 / w, 0.0), 1.0),
    "sigmoid": (lambda x, k: k * sigmoid(k * x) * (1 - sigmoid(k * x)), 4.0),
    "arctan": (lambda x, k: (k / 2) / (1 + (math.pi / 2 * k * x) ** 2), 2.0),
    "triangle": (lambda x, w: np.maximum(0.0, 1 - np.abs(x) / w) / w, 1.0),
}


def values(logits, kind, gates="soft"):
    """Gate/primitive values from logits; hard gates binarised; LIF's fixed gates a=1, b=0, g=1."""
    v = {name: sigmoid(logits[name]) for name in KIND_NAMES[kind]}
    if kind == "glif" and gates == "hard":
        for name in GATES:
            v[name] = (v[name] > 0.5).astype(np.float64)
    return v


def _cond_at(v, t):
    return v["cond"][t] if "cond" in v else None


def step(v, kind, u_prev, o_prev, c_t, cond_t):
    """The GLIF paper's neuron equations, one step; returns u."""
    if kind == "glif_f":
        return v["tau"] * u_prev * (1 - o_prev) - v["lam"] + cond_t * c_t - v["v_re"] * o_prev
    if kind == "lif":
        a, b, g, lam, v_re, cond_t = 1.0, 0.0, 1.0, 0.0, 0.0, 1.0
    else:
        a, b, g, lam, v_re = v["alpha"], v["beta"], v["gamma"], v["lam"], v["v_re"]
    leak = (1 - a * (1 - v["tau"])) * u_prev * (1 - g * o_prev) - (1 - a) * lam
    integration = (1 - b * (1 - cond_t)) * c_t
    return leak + integration - (1 - g) * v_re * o_prev


def forward(logits, inputs, kind="glif", gates="soft", u0=None, o0=None):
    """Returns spikes [T, ...] and membranes [T, ...] in float64."""
    v = values(logits, kind, gates)
    inputs = np.asarray(inputs, np.float64)
    u = np.zeros(inputs.shape[1:]) if u0 is None else np.asarray(u0, np.float64)
    o = np.zeros(inputs.shape[1:]) if o0 is None else np.asarray(o0, np.float64)
    spikes, membranes = [], []
    for t in range(inputs.shape[0]):
        u = step(v, kind, u, o, inputs[t], _cond_at(v, t))
        o = (u - v["v_th"] > 0).astype(np.float64)
        spikes.append(o)
        membranes.append(u)
    return np.stack(spikes), np.stack(membranes)


def _reduce(x, shape):
    """Sums a full-size gradient down to a parameter's shape ([] or [C])."""
    x = x.reshape(-1, x.shape[-1]).sum(0) if x.ndim else x
    return x if len(shape) else np.sum(x)


def backward(logits, inputs, grad_spikes, grad_membranes, kind="glif", gates="soft", static_gates=False,
             static_primitives=False, surrogate="rectangular", width=None, u0=None, o0=None):
    """dL/dlogits, dL/dinputs, dL/du0, dL/do0 for L = sum(grad_spikes*o) + sum(grad_membranes*u)."""
    derivative, default_width = SURROGATES[surrogate]
    width = default_width if width is None else width
    v = values(logits, kind, gates)
    inputs = np.asarray(inputs, np.float64)
    time_steps = inputs.shape[0]
    zeros = np.zeros(inputs.shape[1:])
    u0 = zeros if u0 is None else np.asarray(u0, np.float64)
    o0 = zeros if o0 is None else np.asarray(o0, np.float64)
    spikes, membranes = forward(logits, inputs, kind, gates, u0, o0)
    prev_u = np.concatenate([u0[None], membranes[:-1]])
    prev_o = np.concatenate([o0[None], spikes[:-1]])

    grad_values = {name: np.zeros(np.shape(v[name])) for name in v}
    grad_inputs = np.zeros_like(inputs)
    grad_u_future = np.zeros(inputs.shape[1:])
    grad_o_future = np.zeros(inputs.shape[1:])
    tau, v_th = v["tau"], v["v_th"]
    if kind == "glif":
        a, b, g, lam, v_re = v["alpha"], v["beta"], v["gamma"], v["lam"], v["v_re"]
    elif kind == "glif_f":
        a, b, g, lam, v_re = 1.0, 1.0, 1.0, v["lam"], v["v_re"]
    else:
        a, b, g, lam, v_re = 1.0, 0.0, 1.0, 0.0, 0.0
    for t in reversed(range(time_steps)):
        u, up, op, c = membranes[t], prev_u[t], prev_o[t], inputs[t]
        surrogate_grad = derivative(u - v_th, width)
        grad_o = grad_spikes[t] + grad_o_future
        grad_u = grad_membranes[t] + grad_u_future + grad_o * surrogate_grad
        grad_values["v_th"] += _reduce(-grad_o * surrogate_grad, np.shape(v_th))
        decay = 1 - a * (1 - tau)
        if kind == "glif_f":
            partial = {
                "tau": up * (1 - op),
                "lam": -np.ones_like(u),
                "v_re": -op,
                "cond": c,
            }
            d_input, d_up, d_op = v["cond"][t], tau * (1 - op), -tau * up - v_re
        else:
            cond_t = v["cond"][t] if kind == "glif" else 1.0
            partial = {"tau": a * up * (1 - g * op)}
            if kind == "glif":
                partial.update(
                    alpha=-(1 - tau) * up * (1 - g * op) + lam,
                    beta=-(1 - cond_t) * c,
                    gamma=-decay * up * op + v_re * op,
                    lam=-(1 - a) * np.ones_like(u),
                    v_re=-(1 - g) * op,
                    cond=b * c,
                )
            d_input = 1 - b * (1 - cond_t)
            d_up = decay * (1 - g * op)
            d_op = -decay * up * g - (1 - g) * v_re
        for name, d in partial.items():
            if name == "cond":
                grad_values["cond"][t] += _reduce(grad_u * d, np.shape(v["cond"])[1:])
            else:
                grad_values[name] += _reduce(grad_u * d, np.shape(v[name]))
        grad_inputs[t] = grad_u * d_input
        grad_u_future = grad_u * d_up
        grad_o_future = grad_u * d_op

    grad_logits = {}
    for name in v:
        s = sigmoid(logits[name])
        grad_logits[name] = grad_values[name] * s * (1 - s)
        if (name in GATES and static_gates) or (name in PRIMITIVES and static_primitives):
            grad_logits[name] = np.zeros_like(grad_logits[name])
    return grad_logits, grad_inputs, grad_u_future, grad_o_future
