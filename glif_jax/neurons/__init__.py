"""Spiking neurons (floor 1): the public neuron interface, the time loop they share, the built-ins.

A neuron is a pure step function with its parameters and initial state (:class:`Neuron`,
:class:`Parameter`); :func:`run` / :func:`scan` run any neuron over time from a layer's stored
parameters, configured by :class:`NeuronConfig`; :func:`register` makes a neuron usable by name
in every network, config and tool. Built in: ``glif`` and ``glif_f`` (:mod:`.glif`), ``lif``
(:mod:`.lif`), ``plif`` (:mod:`.plif`), ``alif`` (:mod:`.alif`). No Flax here.

    import glif_jax.neurons as neurons

    def my_step(state, params, inputs_t, time_step, *, gain=1.0):
        membrane = params["tau"] * state.membrane * (1 - state.spike) + gain * inputs_t
        spikes = neurons.spike(membrane - params["v_th"])
        return neurons.MembraneState(membrane, spikes), spikes

    my_lif = neurons.register(neurons.Neuron(
        "my_lif", my_step, (neurons.Parameter("tau", 0.25), neurons.Parameter("v_th", 0.5))))
    spikes = neurons.run(params, inputs, neurons.NeuronConfig(kind="my_lif"))
"""

from glif_jax.neurons.config import GATE_MODES, IMPLEMENTATIONS, NeuronConfig, make_config
from glif_jax.neurons.interface import (CONSTRAINTS, GROUPS, Constraint, MembraneState, Neuron, Parameter, Uniform,
                                        zero_state)
from glif_jax.neurons.loop import (check_params, constrained_values, run, scan, spike, step, using_surrogate)
from glif_jax.neurons.registry import get, names, register

__all__ = [
    "CONSTRAINTS", "GATE_MODES", "GROUPS", "IMPLEMENTATIONS",
    "Constraint", "MembraneState", "Neuron", "NeuronConfig", "Parameter", "Uniform",
    "check_params", "constrained_values", "get", "make_config", "names", "register", "run", "scan", "spike",
    "step", "using_surrogate", "zero_state",
]

from glif_jax.neurons.scopes import constrained_tree, neuron_scopes, scope_neurons  # noqa: E402

__all__ += ["constrained_tree", "neuron_scopes", "scope_neurons"]
