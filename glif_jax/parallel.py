"""Data parallelism: one train/eval step run over every device, two ways.

A *strategy* puts the train state and the host batches on the devices, compiles a step
function for them, and fetches results back to the host. Three strategies share one
interface (``DataParallel``), chosen by ``config.parallel``:

- ``"none"``: plain ``jax.jit`` on the default device.
- ``"pmap"``: the Flax ImageNet example's way. The state is replicated (a leading device
  axis), each host batch ``[B, ...]`` is reshaped to ``[devices, B / devices, ...]`` and the
  step runs per device under ``jax.pmap`` with the named axis ``AXIS_NAME``. The step
  averages what has to agree across devices through the strategy's :class:`Collectives`
  (``jax.lax.pmean`` of gradients, ``psum`` of metric sums over the axis); tdBN/BatchNorm
  statistics are averaged *inside* the model by giving it ``bn_axis_name=AXIS_NAME``, so
  every device normalises with the statistics of the global batch.
- ``"mesh"``: ``jax.jit`` over a one-axis ``Mesh`` of all devices; the batch is a global
  array sharded on its leading axis (``NamedSharding(mesh, P(AXIS_NAME))``) and the state
  is replicated. The program is written as if for one device on the global batch, and
  XLA inserts the cross-device reductions itself: batch means, tdBN statistics and
  gradients are therefore global by construction, so the model takes no ``bn_axis_name``
  and the step's collectives are the identity (:data:`LOCAL`).

The train and eval steps are one function for every strategy: they call
``collectives.mean`` / ``sum`` / ``all`` where a value must agree across devices, and only
the pmap strategy's collectives do anything.

Multi-host: start ``jax.distributed`` first (:func:`glif_jax.distributed.initialize`); every
process then feeds only its own shard of the global batch (``per_process_batch_size``); ``"pmap"`` collectives span all
processes' devices and ``"mesh"`` assembles the global batch with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import numpy as np
from flax import jax_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from glif_jax.errors import check_choice

AXIS_NAME = "batch"

PyTree = Any
StepFn = Callable[..., Any]


class Collectives:
    """What a step does to values that must agree across devices; the identity by default
    (one device, or a ``Mesh`` program where XLA reduces over devices itself)."""

    def mean(self, tree: PyTree) -> PyTree:
        """The average over devices of every leaf."""
        return tree

    def sum(self, tree: PyTree) -> PyTree:
        """The sum over devices of every leaf."""
        return tree

    def all(self, flag: jax.Array) -> jax.Array:
        """A boolean that is True only if it is True on every device."""
        return flag


class AxisCollectives(Collectives):
    """Collectives over a named mapped axis (``jax.pmap``'s ``axis_name``)."""

    def __init__(self, axis_name: str):
        self.axis_name = axis_name

    def mean(self, tree: PyTree) -> PyTree:
        return jax.lax.pmean(tree, self.axis_name)

    def sum(self, tree: PyTree) -> PyTree:
        return jax.lax.psum(tree, self.axis_name)

    def all(self, flag: jax.Array) -> jax.Array:
        return jax.lax.pmin(flag.astype(np.int32), self.axis_name).astype(bool)


LOCAL = Collectives()


class DataParallel(Protocol):
    """How a step runs over the devices; see the module docstring."""

    name: str
    collectives: Collectives  # passed to the step function (values that must agree across devices)
    bn_axis_name: str | None  # passed to the model (tdBN statistics across devices)

    @property
    def device_count(self) -> int: ...

    def put_state(self, state: PyTree) -> PyTree: ...

    def put_batch(self, batch: dict[str, np.ndarray]) -> PyTree: ...

    def compile(self, step_fn: StepFn, *, donate_state: bool = False) -> StepFn: ...

    def fetch(self, tree: PyTree) -> PyTree: ...


class SingleDevice:
    """``jax.jit`` on the default device (``config.parallel = "none"``)."""

    name = "none"
    collectives = LOCAL
    bn_axis_name = None

    @property
    def device_count(self) -> int:
        return 1

    def put_state(self, state: PyTree) -> PyTree:
        return jax.device_put(state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> PyTree:
        return jax.device_put(batch)

    def compile(self, step_fn: StepFn, *, donate_state: bool = False) -> StepFn:
        return jax.jit(step_fn, donate_argnums=(0,) if donate_state else ())

    def fetch(self, tree: PyTree) -> PyTree:
        return jax.device_get(tree)


class PmapDataParallel:
    """``jax.pmap`` over the local devices, named axis ``AXIS_NAME``."""

    name = "pmap"
    collectives = AxisCollectives(AXIS_NAME)
    bn_axis_name = AXIS_NAME

    @property
    def device_count(self) -> int:
        return jax.device_count()

    def put_state(self, state: PyTree) -> PyTree:
        """Replicates a host state: every leaf gains a leading local-device axis."""
        return jax_utils.replicate(state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> PyTree:
        """Splits this process's batch ``[B, ...]`` into ``[local_devices, B / local_devices, ...]``."""
        return shard_for_pmap(batch, jax.local_device_count())

    def compile(self, step_fn: StepFn, *, donate_state: bool = False) -> StepFn:
        return jax.pmap(
            step_fn, axis_name=AXIS_NAME, donate_argnums=(0,) if donate_state else ()
        )

    def fetch(self, tree: PyTree) -> PyTree:
        """The first replica, on the host (the step keeps the replicas equal)."""
        return jax.device_get(jax_utils.unreplicate(tree))


class MeshDataParallel:
    """``jax.jit`` with the batch sharded over a one-axis mesh of all devices."""

    name = "mesh"
    collectives = LOCAL  # the computation is global: XLA inserts the reductions
    bn_axis_name = None

    def __init__(self, devices: list[jax.Device] | None = None):
        self.mesh = make_mesh(devices)
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(AXIS_NAME))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def device_count(self) -> int:
        return self.mesh.devices.size

    def put_state(self, state: PyTree) -> PyTree:
        """Replicates a host state over the mesh (works across processes)."""

        def put(leaf):
            leaf = np.asarray(leaf)
            return jax.make_array_from_callback(leaf.shape, self.replicated, lambda index: leaf[index])

        return jax.tree.map(put, state)

    def put_batch(self, batch: dict[str, np.ndarray]) -> PyTree:
        """This process's rows become its part of one global array sharded on the batch axis."""
        return jax.tree.map(
            lambda rows: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(rows)),
            batch,
        )

    def compile(self, step_fn: StepFn, *, donate_state: bool = False) -> StepFn:
        return jax.jit(
            step_fn,
            in_shardings=(self.replicated, self.batch_sharding),
            out_shardings=self.replicated,
            donate_argnums=(0,) if donate_state else (),
        )

    def fetch(self, tree: PyTree) -> PyTree:
        """Host copies of replicated outputs (each process reads its own replica)."""
        return jax.tree.map(lambda leaf: np.asarray(leaf.addressable_data(0)), tree)


_STRATEGIES = {strategy.name: strategy for strategy in (SingleDevice, PmapDataParallel, MeshDataParallel)}
STRATEGY_NAMES = tuple(_STRATEGIES)   # "none", "pmap", "mesh"


def make_strategy(name: str) -> DataParallel:
    """The strategy named by ``config.parallel``: "none" | "pmap" | "mesh" (else
    :class:`~glif_jax.errors.OptionError` naming ``parallel``)."""
    return _STRATEGIES[check_choice("parallel", name, STRATEGY_NAMES)]()


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-dimensional mesh named ``AXIS_NAME`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS_NAME,))


def shard_for_pmap(batch: PyTree, local_device_count: int) -> PyTree:
    """Reshapes every leaf ``[B, ...]`` to ``[local_device_count, B / local_device_count, ...]``."""

    def split(leaf):
        leaf = np.asarray(leaf)
        if leaf.shape[0] % local_device_count:
            raise ValueError(
                f"batch of {leaf.shape[0]} rows cannot be split evenly over "
                f"{local_device_count} local devices"
            )
        return leaf.reshape((local_device_count, -1) + leaf.shape[1:])

    return jax.tree.map(split, batch)


def per_process_batch_size(global_batch_size: int) -> int:
    """This process's share of a global batch; every process gets the same share."""
    if global_batch_size % jax.process_count():
        raise ValueError(
            f"batch size {global_batch_size} is not divisible by the process count "
            f"{jax.process_count()}"
        )
    return global_batch_size // jax.process_count()
