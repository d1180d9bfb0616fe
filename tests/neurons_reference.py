"""Independent float64 NumPy restatements of the built-in baseline neurons, written from their equations.

PLIF (Fang et al., ICCV 2021, with spikingjelly's ``ParametricLIFNode`` semantics) and the
adaptive-threshold LIF; each returns spikes and membranes ``[T, ...]`` from inputs ``[T, ...]``
and the parameters' *values* (after the sigmoid).
"""

from __future__ import annotations

import numpy as np


def plif(inputs, inverse_tau, *, decay_input=True, v_threshold=1.0, v_reset=0.0):
    """PLIF: charge (decay_input or not, v_reset 0 / other / None = soft), fire at v >= v_threshold,
    reset in the same step (hard to v_reset, or soft by v_threshold); v starts at v_reset (0 if soft)."""
    inputs = np.asarray(inputs, np.float64)
    k = np.asarray(inverse_tau, np.float64)
    v = np.full(inputs.shape[1:], 0.0 if v_reset is None else v_reset)
    spikes, membranes = [], []
    for x in inputs:
        reset_level = 0.0 if v_reset is None else v_reset
        if decay_input:
            v = v + (x - (v - reset_level)) * k
        else:
            v = v - (v - reset_level) * k + x
        o = (v - v_threshold >= 0).astype(np.float64)
        v = v - o * v_threshold if v_reset is None else (1 - o) * v + o * v_reset
        spikes.append(o)
        membranes.append(v)
    return np.stack(spikes), np.stack(membranes)


def adaptive_lif(inputs, tau, v_th, rho, kappa):
    """u_t = tau u (1 - o) + x_t;  a_t = rho a + (1 - rho) o;  o_t = [u_t > v_th + kappa a_t]."""
    inputs = np.asarray(inputs, np.float64)
    u = np.zeros(inputs.shape[1:])
    a = np.zeros_like(u)
    o = np.zeros_like(u)
    spikes, membranes = [], []
    for x in inputs:
        u = tau * u * (1 - o) + x
        a = rho * a + (1 - rho) * o
        o = (u - (v_th + kappa * a) > 0).astype(np.float64)
        spikes.append(o)
        membranes.append(u)
    return np.stack(spikes), np.stack(membranes)
