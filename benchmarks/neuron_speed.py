"""Speed of one channel-wise GLIF layer: glif-jax against spikingjelly and PyTorch.

Times the forward and the forward+backward (loss = sum(spikes * g); gradients for the inputs
and all eight parameters) at three shapes, float32, every case interleaved with the others and
repeated; prints min and median, speed-ups and the fraction of a memory-bandwidth bound.
Run from the repository root in the benchmark environment (benchmarks/README.md):

    python benchmarks/neuron_speed.py [--quick] [--repeats N] [--no-compile] [--variants]
                                      [--device {cpu,cuda}] [--shapes T,B,H,W,C ...]

Without torch/spikingjelly installed only glif-jax is timed. ``--device cuda`` runs every
framework on the GPU (JAX's CUDA backend, torch tensors on ``cuda``).
"""

from __future__ import annotations

import os
import sys

# Every framework runs in this one process, so under one allocator setting. By default glibc
# hands large freed buffers back to the kernel, and every call page-faults them in again;
# a high mmap_threshold alone does not stop it for XLA, whose worker threads' arenas (64 MiB
# heaps) map anything larger. One arena and no mapping do (see benchmarks/README.md).
ALLOCATOR = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
if __name__ == "__main__" and "GLIBC_TUNABLES" not in os.environ:
    os.environ["GLIBC_TUNABLES"] = ALLOCATOR  # read by glibc at start-up only: start again
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import timing  # noqa: E402
from glif_jax import cpu_kernel  # noqa: E402
from glif_jax.neuron import NeuronConfig, glif  # noqa: E402

try:
    import torch  # noqa: E402

    import torch_glif  # noqa: E402
except ImportError:  # the bench extra is not installed: glif-jax alone
    torch = torch_glif = None

SHAPES = ((4, 32, 32, 32, 64), (6, 16, 16, 16, 128), (16, 8, 48, 48, 64))  # (T, B, H, W, C)
QUICK_SHAPES = ((4, 2, 8, 8, 16), (6, 2, 4, 4, 32), (16, 1, 6, 6, 16))
CROSSCHECK_SHAPE = (4, 2, 5, 5, 8)
# arrays of T*B*H*W*C float32 that must cross memory at least once
FORWARD_ARRAYS = 2  # read the inputs, write the spikes
BACKWARD_ARRAYS = 6  # ... + keep one membrane per step, read g and the membranes, write dL/dx
REFERENCE = "spikingjelly"
COMPILED = "torch.compile"
DEVICES = ("cpu", "cuda")


def cifar_logits(time_steps: int, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The paper's CIFAR initialisation with spikingjelly's gate range (logits in [-0.1, 0.1))."""

    def logit(value):
        return np.log(value / (1 - value))

    logits = {name: rng.uniform(-0.1, 0.1, channels) for name in ("alpha", "beta", "gamma")}
    values = {"tau": 0.25, "lam": 0.0625, "v_th": 0.5, "v_re": 0.5}
    logits.update({name: np.full(channels, logit(value)) for name, value in values.items()})
    logits["cond"] = np.full((time_steps, channels), logit(0.5))
    return {name: value.astype(np.float32) for name, value in logits.items()}


def problem(shape: tuple[int, ...], seed: int = 0):
    """Inputs ``[T, B, H, W, C]`` that make a few spikes, an incoming gradient, and logits."""
    rng = np.random.default_rng(seed)
    inputs = (0.5 + 0.5 * rng.standard_normal(shape)).astype(np.float32)
    grad_spikes = rng.standard_normal(shape).astype(np.float32)
    return inputs, grad_spikes, cifar_logits(shape[0], shape[-1], rng)


def jax_calls(config: NeuronConfig, inputs, grad_spikes, logits, device: jax.Device):
    """``(forward, forward_and_backward)`` closures, each jitted as a whole, on ``device``."""
    params = jax.device_put({name: jnp.asarray(value) for name, value in logits.items()}, device)
    x, g = jax.device_put((inputs, grad_spikes), device)
    forward = jax.jit(lambda p, x: glif(p, x, config))
    gradients = jax.jit(jax.grad(lambda p, x, g: jnp.sum(glif(p, x, config) * g), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(forward(params, x)),
            lambda: jax.block_until_ready(gradients(params, x, g)))


def copy_calls(inputs: np.ndarray, device: str, jax_device: jax.Device) -> dict[str, object]:
    """Plain copies of one array the size of the inputs on ``device``, for the copy bandwidth."""
    negate = jax.jit(jnp.negative)
    x = jax.device_put(inputs, jax_device)
    calls = {"jax negate": lambda: jax.block_until_ready(negate(x))}
    if device == "cpu":
        target = np.empty_like(inputs)
        calls = {"numpy copyto": lambda: np.copyto(target, inputs), **calls}
    if torch is not None:
        calls["torch copy_"] = torch_glif.copy_call(inputs, device)
    return calls


def frameworks(variants: bool, compile_loop: bool, device: str = "cpu") -> dict[str, object]:
    """name -> NeuronConfig (glif-jax) or the name of a torch_glif framework."""
    # on the CPU the default picks the compiled kernel; "XLA" is the pure-XLA path (GPU/TPU, no
    # compiler), which is already the default on a GPU
    chosen: dict[str, object] = {"glif-jax": NeuronConfig()}
    if device == "cpu":
        chosen["glif-jax XLA"] = NeuronConfig(implementation="xla")
    if variants:
        chosen.update({
            "glif-jax XLA unroll=1": NeuronConfig(implementation="xla", unroll=1),
            "glif-jax XLA unroll=T": NeuronConfig(implementation="xla", unroll=True),
            "glif-jax autodiff": NeuronConfig(implementation="autodiff"),
        })
    if torch_glif is not None:
        chosen.update({REFERENCE: REFERENCE, "torch loop": "torch loop"})
        if compile_loop:
            chosen[COMPILED] = COMPILED
    return chosen


def crosscheck(jax_device: jax.Device) -> str:
    """glif-jax's spikes and gradients (on ``jax_device``) against spikingjelly's (torch, CPU)
    on one small problem."""
    inputs, grad_spikes, logits = problem(CROSSCHECK_SHAPE, seed=1)
    for name in logits:  # distinct values per channel, so that a mixed-up channel would show
        logits[name] = logits[name] + np.random.default_rng(2).normal(0, 0.3, logits[name].shape).astype(np.float32)
    want = torch_glif.spikingjelly_reference(inputs, grad_spikes, logits)
    params, x, g = jax.device_put(({name: jnp.asarray(value) for name, value in logits.items()}, inputs,
                                   grad_spikes), jax_device)
    spikes, pullback = jax.vjp(lambda p, x: glif(p, x), params, x)
    grad_params, grad_inputs = pullback(g)
    got = {"spikes": spikes, "inputs": grad_inputs, **grad_params}
    same = int(np.sum(np.asarray(spikes) == want["spikes"]))
    errors = ", ".join(
        f"{name} {np.max(np.abs(np.asarray(got[name]) - want[name])) / np.max(np.abs(want[name])):.1e}"
        for name in want if name != "spikes"
    )
    return (f"cross-check vs spikingjelly GatedLIFNode (torch on the CPU), glif-jax on {jax_device.platform}, "
            f"shape {CROSSCHECK_SHAPE}, {spikes.size} neurons "
            f"({int(want['spikes'].sum())} spikes): identical spikes {same}/{spikes.size}; "
            f"gradients, max |difference| / max |value|: {errors}")


def environment(device: str, jax_device: jax.Device) -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    if device == "cuda":
        model = f"{jax_device.device_kind} (host {model})"
    versions = [f"jax {jax.__version__} ({jax_device.platform})"]
    if device == "cpu":
        versions.append(f"glif-jax CPU kernel: {cpu_kernel.isa() or 'not built'}")
    if torch is not None:
        versions += [f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
                     f"spikingjelly {importlib.metadata.version('spikingjelly')}"]
    return (f"{datetime.date.today()}, {model}, {os.cpu_count()} cores, {', '.join(versions)}\n"
            f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, load average {os.getloadavg()[0]:.2f}")


def table(shapes, names, seconds, decimals: int = 2) -> str:
    """One row per shape and framework; speed-ups and bound fractions use the minimum times;
    times in milliseconds with ``decimals`` digits after the point."""
    header = (f"{'shape (T,B,H,W,C)':<22}{'framework':<22}{'fwd min':>9}{'median':>9}{'f+b min':>9}{'median':>9}"
              f"{'fwd xSJ':>9}{'f+b xSJ':>9}{'fwd xTC':>9}{'f+b xTC':>9}{'fwd bnd':>9}{'f+b bnd':>9}")
    lines = ["times in ms; xSJ, xTC = speed-up over spikingjelly, torch.compile; bnd = fraction of the "
             "memory-bandwidth bound", header]
    for shape in shapes:
        nbytes = 4 * int(np.prod(shape))
        copies = [2 * nbytes / min(s) for (at, _, mode), s in seconds.items() if at == shape and mode == "copy"]
        bandwidth = max(copies)
        best = {(name, mode): min(s) for (at, name, mode), s in seconds.items() if at == shape}
        for name in names:
            row = f"{str(shape):<22}{name:<22}"
            for mode in ("fwd", "fwd+bwd"):
                row += "".join(f"{value:>9.{decimals}f}" for value in timing.summary_ms(seconds[(shape, name, mode)]))
            for other in (REFERENCE, COMPILED):
                for mode in ("fwd", "fwd+bwd"):
                    row += f"{best[(other, mode)] / best[(name, mode)]:>9.2f}" if (other, mode) in best else f"{'-':>9}"
            for mode, arrays in (("fwd", FORWARD_ARRAYS), ("fwd+bwd", BACKWARD_ARRAYS)):
                row += f"{arrays * nbytes / bandwidth / best[(name, mode)]:>9.0%}"
            lines.append(row)
        lines.append(f"{'':<22}copy bandwidth {bandwidth / 1e9:.1f} GB/s (best of "
                     + ", ".join(f"{name} {2 * nbytes / best[(name, 'copy')] / 1e9:.1f}"
                                 for (name, mode) in best if mode == "copy") + ")")
    return "\n".join(lines)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"4,32,32,32,64"`` -> ``(4, 32, 32, 32, 64)``: (T, B, H, W, C)."""
    try:
        shape = tuple(int(size) for size in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 5 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is five positive sizes T,B,H,W,C, not {text!r}")
    return shape


def start_device(device: str) -> jax.Device:
    """Starts JAX on ``device``'s platform (before its first computation) and returns the device
    glif-jax runs on; raises RuntimeError, saying why, where ``device`` is not usable here."""
    if device == "cuda" and torch is not None and not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA GPU")
    jax.config.update("jax_platforms", "cuda,cpu" if device == "cuda" else "cpu")
    try:
        return jax.devices(device)[0]
    except RuntimeError as error:
        raise RuntimeError(f"JAX cannot start its {device} backend: {str(error).splitlines()[0]}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 3 repeats: checks that it runs")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of interleaved calls (default 15)")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (slow to compile)")
    parser.add_argument("--variants", action="store_true", help="also time other glif-jax settings")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where every framework runs (default cpu)")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, metavar="T,B,H,W,C",
                        help="problem shapes instead of the issue's three (or --quick's)")
    args = parser.parse_args()
    shapes = args.shapes or (QUICK_SHAPES if args.quick else SHAPES)
    repeats = args.repeats or (3 if args.quick else 15)
    try:
        jax_device = start_device(args.device)
    except RuntimeError as error:
        parser.exit(1, f"{parser.prog}: error: --device {args.device}: {error}\n")
    if torch is not None:
        torch.set_num_threads(os.cpu_count())  # as many as XLA's pool uses
    print(environment(args.device, jax_device))
    if torch_glif is not None:
        print(crosscheck(jax_device))
    chosen = frameworks(args.variants, not args.no_compile, args.device)
    cases = {}
    for shape in shapes:
        inputs, grad_spikes, logits = problem(shape)
        for name, how in chosen.items():
            calls = (jax_calls(how, inputs, grad_spikes, logits, jax_device) if isinstance(how, NeuronConfig)
                     else torch_glif.benchmark_calls(how, inputs, grad_spikes, logits, args.device))
            for mode, call in zip(("fwd", "fwd+bwd"), calls):
                cases[(shape, name, mode)] = call
        for name, call in copy_calls(inputs, args.device, jax_device).items():
            cases[(shape, name, "copy")] = call
    print(f"compiling and warming up {len(cases)} cases ...", flush=True)
    timing.interleaved(cases, repeats=2)
    print(f"timing: {repeats} interleaved rounds", flush=True)
    seconds = timing.interleaved(cases, repeats)
    print(table(shapes, list(chosen), seconds, decimals=3 if args.device == "cuda" else 2))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
