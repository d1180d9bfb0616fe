"""Flax modules around the neuron (floor 2)."""

from glif_jax.layers.encoding import frames_time_first, mean_over_time, repeat_over_time
from glif_jax.layers.spiking import GLIF, PRESETS, SpikingLayer, initial_values, neuron_values, preset_names
from glif_jax.layers.tdbn import RESIDUAL_BRANCH_SCALE, TDBN_THRESHOLD, TdBatchNorm, plain_batch_norm
from glif_jax.layers.time import merge_time, split_time, time_merged

__all__ = [
    "GLIF", "PRESETS", "SpikingLayer", "initial_values", "neuron_values", "preset_names",
    "RESIDUAL_BRANCH_SCALE", "TDBN_THRESHOLD", "TdBatchNorm", "plain_batch_norm",
    "merge_time", "split_time", "time_merged",
    "frames_time_first", "mean_over_time", "repeat_over_time",
]
