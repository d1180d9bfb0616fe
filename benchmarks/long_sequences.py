"""Long sequences and wide layers: glif-jax's ``auto`` (the CPU kernel) against its ``xla`` path and Spyx.

Two parts, forward+backward in float32, each shape timed in a fresh process with its cases
interleaved (``timing.interleaved``), min and median:

* ``--workload``: the Open Neuromorphic SNN-library benchmark's workload — one LIF layer, alone
  and after a Linear layer, batch 16, T = 500, 512 / 4096 / 16384 neurons — for glif-jax's
  ``kind="lif"`` (layer-wise parameters) and GLIF (channel-wise and layer-wise parameters),
  against Spyx's LIF (``spyx.nn.LIF`` run by ``spyx.nn.run``, the same surrogate shape).
* ``--sweep``: a shape sweep, T from 4 to 1000 and 512 to 1M neurons per step, wide layers
  (batch 16, C = neurons / 16) and narrow ones (C = 64), for ``kind="lif"`` and channel-wise GLIF,
  so that a regression of either path at any shape shows.

Run from the repository root in the benchmark environment (benchmarks/README.md)::

    python benchmarks/long_sequences.py [--workload] [--sweep] [--quick] [--repeats N]
                                        [--surrogate triangle|sigmoid|...] [--linear-neurons N ...]

Without an option both parts run (a few minutes on 2 cores). Without Spyx installed its column
says so and glif-jax alone is timed.
"""

from __future__ import annotations

import os
import sys

# the allocator setting of neuron_speed.py (see benchmarks/README.md), before anything allocates
ALLOCATOR = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
if __name__ == "__main__" and "GLIBC_TUNABLES" not in os.environ:
    os.environ["GLIBC_TUNABLES"] = ALLOCATOR
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402

BATCH, TIME_STEPS = 16, 500
WORKLOAD_NEURONS = (512, 4096, 16384)
LINEAR_NEURONS = (512, 4096)  # the Linear layer's N x N matmul dominates beyond (16384: ~1 GiB of weights)
NEURONS = ("lif", "glif channel-wise", "glif layer-wise")
SWEEP_NEURONS = ("lif", "glif channel-wise")
SWEEP_TIME_STEPS = (4, 16, 64, 250, 1000)
SWEEP_SIZES = (512, 8192, 131072, 1 << 20)  # neurons per step
SWEEP_ELEMENTS = 1 << 23  # T x neurons at most (32 MiB per float32 array)
NARROW_CHANNELS = 64
QUICK = {"workload": [(16, 8, 32, "LIF"), (16, 8, 32, "Linear+LIF")], "sweep": [(4, 2, 64), (32, 4, 16)]}
IMPLEMENTATIONS = ("auto", "xla")
SPYX = "spyx"


def logits(kind: str, time_steps: int, channels: int, rng) -> dict:
    """Parameters: LIF ``tau`` 0.5 and ``v_th`` 0.5, layer-wise; GLIF the paper's CIFAR start
    (benchmarks/neuron_speed.py), per channel (``[C]``, cond ``[T, C]``) or layer-wise (``[]``, cond ``[T]``)."""
    import numpy as np

    if kind == "lif":
        return {"tau": np.float32(0.0), "v_th": np.float32(0.0)}
    from neuron_speed import cifar_logits

    per_channel = cifar_logits(time_steps, channels, rng)
    if kind == "glif channel-wise":
        return per_channel
    return {name: value[0] if name != "cond" else value[:, 0] for name, value in per_channel.items()}


def glif_call(kind: str, implementation: str, surrogate: str, x, g, weights=None):
    """A jitted forward+backward of glif-jax (after ``x @ weights + bias`` when weights are given)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from glif_jax.neuron import glif

    options = {"kind": "lif" if kind == "lif" else "glif", "surrogate": surrogate, "implementation": implementation}
    params = {name: jnp.asarray(value) for name, value in logits(kind, x.shape[0], g.shape[-1],
                                                                 np.random.default_rng(0)).items()}
    if weights is None:  # g an argument, not a constant folded into the program
        loss = lambda p, x, g: jnp.sum(glif(p, x, **options) * g)  # noqa: E731
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(grad(params, x, g))

    def loss(p, layer, x, g):
        return jnp.sum(glif(p, x @ layer["weights"] + layer["bias"], **options) * g)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    layer = {"weights": weights, "bias": jnp.zeros(weights.shape[1], weights.dtype)}
    return lambda: jax.block_until_ready(grad(params, layer, x, g))


def spyx_call(surrogate: str, x, g, linear: bool):
    """Spyx's LIF (after an ``nnx.Linear``) run over time by ``spyx.nn.run``; gradients for every
    parameter (and the inputs without the Linear layer)."""
    import jax
    import jax.numpy as jnp
    import spyx
    from flax import nnx

    activations = {"triangle": spyx.axn.triangular, "sigmoid": spyx.axn.superspike, "arctan": spyx.axn.arctan}
    rngs = nnx.Rngs(0)
    neurons = g.shape[-1]
    lif = spyx.nn.LIF((neurons,), activation=activations[surrogate](), rngs=rngs)
    model = spyx.nn.Sequential(nnx.Linear(x.shape[-1], neurons, rngs=rngs), lif) if linear else lif
    graph, state = nnx.split(model)

    def loss(state, x, g):
        spikes, _ = spyx.nn.run(nnx.merge(graph, state), x)
        return jnp.sum(spikes * g)

    grad = jax.jit(jax.grad(loss, argnums=0 if linear else (0, 1)))
    return lambda: jax.block_until_ready(grad(state, x, g))


def spyx_version() -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version("spyx")
    except importlib.metadata.PackageNotFoundError:
        return None


def worker(job: dict) -> dict:
    """Times one shape's cases in this process: ``{case: [seconds, ...]}``."""
    import jax
    import numpy as np

    import timing

    jax.config.update("jax_platforms", "cpu")
    time_steps, batch, channels = job["shape"]
    rng = np.random.default_rng(1)
    linear = job.get("model") == "Linear+LIF"
    x = rng.normal(0.5, 0.5 if not linear else 0.05, (time_steps, batch, channels)).astype(np.float32)
    g = rng.standard_normal((time_steps, batch, channels)).astype(np.float32)
    weights = rng.normal(0, 1 / np.sqrt(channels), (channels, channels)).astype(np.float32) if linear else None
    x, g = jax.device_put((x, g))
    cases = {}
    for kind in job["neurons"]:
        for implementation in IMPLEMENTATIONS:
            cases[f"{kind} {implementation}"] = glif_call(kind, implementation, job["surrogate"], x, g, weights)
    if job["spyx"]:
        cases[SPYX] = spyx_call(job["surrogate"], x, g, linear)
    timing.interleaved(cases, repeats=1)  # compile and warm up
    return timing.interleaved(cases, job["repeats"])


def run_job(job: dict) -> dict:
    """``worker(job)`` in a fresh process."""
    command = [sys.executable, __file__, "--worker", json.dumps(job)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    if result.returncode:
        raise RuntimeError(f"{job}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def ms(seconds: list[float]) -> str:
    import statistics

    values = (min(seconds), statistics.median(seconds))
    return "".join(f"{1e3 * value:9.{1 if value >= 0.01 else 2}f}" for value in values)


def header(title: str, spyx: bool) -> None:
    print(f"\n{title}: forward+backward, ms (min, median); ratios of min times (> 1: the first is slower)")
    line = f"{'shape':<34}{'neuron':<19}{'auto min':>9}{'median':>9}{'xla min':>9}{'median':>9}{'xla/auto':>9}"
    print(line + (f"{'spyx min':>9}{'median':>9}{'spyx/auto':>10}{'spyx/xla':>9}" if spyx else ""), flush=True)


def report(label: str, seconds: dict, neurons: tuple[str, ...]) -> None:
    """One line per neuron: auto, xla (and Spyx) min and median ms, and their ratios."""
    for kind in neurons:
        auto, xla = seconds[f"{kind} auto"], seconds[f"{kind} xla"]
        line = f"{label:<34}{kind:<19}{ms(auto)}{ms(xla)}{min(xla) / min(auto):9.2f}"
        if SPYX in seconds:
            other = seconds[SPYX]
            line += f"{ms(other)}{min(other) / min(auto):10.2f}{min(other) / min(xla):9.2f}"
        print(line, flush=True)


def environment() -> str:
    import jax

    from glif_jax import cpu_kernel

    with open("/proc/cpuinfo") as cpuinfo:
        lines = cpuinfo.read().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    vector = " ".join(flag for flag in ("avx2", "fma", "avx512f") if flag in flags) or "no AVX2"
    return (f"{datetime.date.today()}, {model} ({vector}), {os.cpu_count()} cores, jax {jax.__version__}, "
            f"glif-jax CPU kernel: {cpu_kernel.isa() or 'not built'}, spyx {spyx_version() or 'not installed'}\n"
            f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, load average {os.getloadavg()[0]:.2f}")


def sweep_shapes() -> list[tuple[int, int, int]]:
    """(T, B, C) for every T and size within SWEEP_ELEMENTS: wide (B = 16) and narrow (C = 64)."""
    shapes = []
    for time_steps in SWEEP_TIME_STEPS:
        for size in SWEEP_SIZES:
            if time_steps * size <= SWEEP_ELEMENTS:
                shapes += [(time_steps, BATCH, size // BATCH), (time_steps, size // NARROW_CHANNELS, NARROW_CHANNELS)]
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="store_true", help="the Open Neuromorphic workload")
    parser.add_argument("--sweep", action="store_true", help="the shape sweep")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 2 repeats: checks that it runs")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of interleaved calls (default 5)")
    parser.add_argument("--surrogate", default="triangle", help="the surrogate's shape (default triangle)")
    parser.add_argument("--neurons", nargs="+", type=int, default=list(WORKLOAD_NEURONS),
                        help="workload: neurons of the LIF layer")
    parser.add_argument("--linear-neurons", nargs="*", type=int, default=list(LINEAR_NEURONS),
                        help="workload: neurons of the Linear+LIF rows")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    parts = [part for part in ("workload", "sweep") if getattr(args, part)] or ["workload", "sweep"]
    repeats = args.repeats or (2 if args.quick else 5)
    spyx = spyx_version() is not None and args.surrogate in ("triangle", "sigmoid", "arctan")
    print(environment())
    print(f"surrogate {args.surrogate}; {repeats} interleaved rounds per shape, each shape a fresh process"
          + ("" if spyx else "; Spyx not timed (not installed, or no such surrogate in Spyx)"))
    base = {"surrogate": args.surrogate, "repeats": repeats}
    if "workload" in parts:
        jobs = ([(t, b, c, model) for t, b, c, model in QUICK["workload"]] if args.quick else
                [(TIME_STEPS, BATCH, n, "LIF") for n in args.neurons]
                + [(TIME_STEPS, BATCH, n, "Linear+LIF") for n in args.linear_neurons])
        header("Open Neuromorphic workload", spyx)
        for time_steps, batch, channels, model in jobs:
            job = {**base, "shape": (time_steps, batch, channels), "model": model, "neurons": NEURONS, "spyx": spyx}
            report(f"{model} T={time_steps} B={batch} N={channels}", run_job(job), NEURONS)
    if "sweep" in parts:
        header("Shape sweep", spyx)
        for shape in QUICK["sweep"] if args.quick else sweep_shapes():
            job = {**base, "shape": shape, "neurons": SWEEP_NEURONS, "spyx": spyx and shape[2] != NARROW_CHANNELS}
            report(f"T={shape[0]} B={shape[1]} C={shape[2]} ({shape[1] * shape[2]}/step)", run_job(job), SWEEP_NEURONS)

if __name__ == "__main__":
    main()
