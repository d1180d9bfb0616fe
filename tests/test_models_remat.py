"""Rematerialised blocks (``remat=True``, as the configs set): the same training step, less memory.

Each block keeps only its input and its convolutions' outputs for the backward pass and
computes its tdBN and GLIF layers again there. The train step of every block kind must
give the same loss, logits, gradients and running statistics as without remat, and its
program, compiled with XLA's memory-optimising scheduler (as ``glif-train`` compiles it),
must need less temporary memory.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

from glif_jax import models
from glif_jax.optim import torch_sgd
from tests.comparison import relative_difference
from glif_jax.train.state import create_train_state
from glif_jax.train.steps import train_step

TOLERANCE = 1e-5   # float32 rounding: XLA fuses the recomputed layers differently
MEMORY_SCHEDULER = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}   # see train/runtime.py
CASES = {   # model -> (options, input shape per example, init preset)
    "resnet18": (dict(width_multiplier=0.125), (16, 16, 3), "cifar"),
    "ms_resnet18": (dict(width_multiplier=0.125), (64, 64, 3), "imagenet"),
    "wide7b": (dict(width_multiplier=0.125), (2, 48, 48, 2), "dvs"),
}


def step_outputs(name: str, remat: bool):
    options, shape, neuron_init = CASES[name]
    time_steps = shape[0] if len(shape) == 4 else 2
    model = models.get_model(name, num_classes=10, time_steps=time_steps, neuron_init=neuron_init, remat=remat, **options)
    optimizer = torch_sgd(0.1, momentum=0.9)
    state = create_train_state(model, optimizer, rng=jax.random.PRNGKey(0), input_shape=shape)
    batch = {"image": jax.random.uniform(jax.random.PRNGKey(1), (4, *shape)) * 2,
             "label": jnp.arange(4, dtype=jnp.int32)}
    step = jax.jit(functools.partial(train_step, model=model, optimizer=optimizer, spike_stats=True))
    compiled = step.lower(state, batch).compile(compiler_options=MEMORY_SCHEDULER)
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes
    new_state, sums = step(state, batch)
    return new_state, sums, temp_bytes


@pytest.fixture(scope="module", params=list(CASES))
def both(request):
    return request.param, step_outputs(request.param, remat=False), step_outputs(request.param, remat=True)


def test_remat_gives_the_same_step(both):
    name, (plain_state, plain_sums, _), (remat_state, remat_sums, _) = both
    assert jax.tree.structure(remat_state) == jax.tree.structure(plain_state)
    assert sorted(remat_sums) == sorted(plain_sums)
    assert any(key.startswith("spikes/") for key in plain_sums)   # the GLIF layers' statistics, too
    for part in ("params", "batch_stats", "opt_state"):
        for got, want in zip(jax.tree.leaves(getattr(remat_state, part)), jax.tree.leaves(getattr(plain_state, part))):
            assert relative_difference(got, want) <= TOLERANCE, (name, part)
    for key in plain_sums:
        assert relative_difference(remat_sums[key], plain_sums[key]) <= TOLERANCE, key


def test_remat_needs_less_memory(both):
    name, (_, _, plain_bytes), (_, _, remat_bytes) = both
    assert remat_bytes < 0.9 * plain_bytes, (name, remat_bytes, plain_bytes)   # 17-45 % less here


def test_the_configs_turn_it_on_and_it_can_be_turned_off():
    from glif_jax.configs import cifar10_resnet18_t4

    assert models.get_model("resnet18", num_classes=10, time_steps=2).remat is False
    config = cifar10_resnet18_t4.get_config()
    assert config.model.remat is True
    assert models.ModelOptions.from_config(config.model).build(10).remat is True
    with config.unlocked():
        config.model.remat = False
    assert models.ModelOptions.from_config(config.model).build(10).remat is False
