"""One training step of the paper's networks: glif-jax against the authors' way in PyTorch.

For each model it times one SGD step (forward, backward, the paper's optimiser with its three
parameter groups) on the same batch shape, three ways:

- ``glif-jax``: exactly what ``glif-train`` runs — the experiment's config file
  (``configs/*.py``), ``glif_jax.train.steps.train_step`` compiled by the ``"none"`` strategy with the
  state donated, in a process set up by ``glif_jax.train.runtime.configure_for_training`` as
  ``glif-train`` sets itself up (no flag or variable for the user to know);
- ``glif-jax no remat``: the same with ``--config.model.remat=False`` (keeps every tdBN
  output and membrane for the backward pass instead of recomputing them: faster, more memory);
- ``torch``: ``torch_models.SpikingNetwork``, the same network written as the authors' code
  runs it (time merged into the batch for conv/BN, the neuron looping over T in Python,
  tdBN), plain eager PyTorch with ``torch.optim.SGD`` and the same three groups;
- ``torch.compile``: the same module under ``torch.compile``;
- ``glif-jax NEURON`` (with ``--neurons plif alif ...``): the ``glif-jax`` step with every
  spiking layer another registered neuron (``--config.model.neuron.kind=NEURON``), to compare
  a neuron's cost with GLIF's in the same network.

Every (model, framework) runs in a fresh process, in the default environment, and the
frameworks alternate within each round, so that each one's first call (trace + compile) and
peak memory are its own and a change in the machine's load is spread over all of them.
Prints per model: step time (min and median over all rounds' steps), first call, peak memory
(resident set size on the CPU, the device's peak allocation on a GPU) and the ratios
(speed-up of glif-jax = reference time / glif-jax time; memory = glif-jax / reference).

    python benchmarks/model_speed.py                       # CPU: all four models, ~25 minutes
    python benchmarks/model_speed.py --models resnet18 --rounds 3
    python benchmarks/model_speed.py --device cuda         # GPU: batch 64 (CIFAR), 32 (DVS)
    python benchmarks/model_speed.py --quick               # narrow networks: checks it all runs
    python benchmarks/model_speed.py --models resnet18 --frameworks glif-jax --neurons plif alif
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))   # configs/ and train/ from this checkout
FRAMEWORKS = ("glif-jax", "glif-jax no remat", "torch", "torch.compile")
REFERENCES = ("torch", "torch.compile")

# model -> (config file, input per example [H, W, C] or [T, H, W, C] for frames, classes)
MODELS = {
    "resnet18": ("cifar10_resnet18_t4", "image", 10),
    "resnet19": ("cifar10_resnet19_t4", "image", 10),
    "cifarnet": ("cifar10_cifarnet_t4", "image", 10),
    "wide7b": ("dvs_wide7b_t16", "frames", 10),
}
CPU_BATCH = {"image": 16, "frames": 8}
GPU_BATCH = {"image": 64, "frames": 32}


# ---- one (framework, model) in its own process -------------------------------------------
def worker(framework: str, model: str, batch: int, steps: int, device: str, width: float) -> dict:
    if framework.startswith("glif-jax"):
        neuron = framework.removeprefix("glif-jax").strip()
        if neuron == "no remat":
            return _glif_jax_worker(model, batch, steps, width, remat=False)
        return _glif_jax_worker(model, batch, steps, width, remat=True, neuron=neuron or None)
    return _torch_worker(framework, model, batch, steps, device, width)


def _batch_arrays(model: str, batch: int, config) -> tuple:
    import numpy as np

    _, kind, _ = MODELS[model]
    time_steps = config.model.time_steps
    shape = (batch, 32, 32, 3) if kind == "image" else (batch, time_steps, 48, 48, 2)
    rng = np.random.default_rng(0)
    images = rng.standard_normal(shape).astype(np.float32)
    if kind == "frames":
        images = np.abs(images)   # event counts
    labels = rng.integers(0, MODELS[model][2], batch).astype(np.int32)
    return images, labels


def _config(model: str, width: float):
    import importlib

    config = importlib.import_module(f"glif_jax.configs.{MODELS[model][0]}").get_config()
    if width != 1.0:
        with config.unlocked():
            config.model.kwargs.width_multiplier = width
    return config


def _glif_jax_worker(model: str, batch: int, steps: int, width: float, remat: bool, neuron: str | None = None
                     ) -> dict:
    from glif_jax.train import runtime

    settings = runtime.configure_for_training()   # as glif-train: may restart this process
    import functools

    import jax

    from glif_jax import models, optim, parallel
    from glif_jax.train import steps as train_steps
    from glif_jax.train.state import create_train_state

    config = _config(model, width)
    with config.unlocked():
        config.model.remat = remat
        if neuron:
            config.model.neuron.kind = neuron
    network = models.ModelOptions.from_config(config.model).build(MODELS[model][2])
    optimizer = optim.make_optimizer(config.optim, num_epochs=config.num_epochs, steps_per_epoch=100,
                                     neuron=network.neuron)
    images, labels = _batch_arrays(model, batch, config)
    strategy = parallel.make_strategy("none")
    state = strategy.put_state(create_train_state(network, optimizer, rng=jax.random.PRNGKey(0),
                                                  input_shape=images.shape[1:]))
    step = strategy.compile(functools.partial(train_steps.train_step, model=network, optimizer=optimizer),
                            donate_state=True)
    placed = strategy.put_batch({"image": images, "label": labels})

    def run() -> float:
        nonlocal state
        state, sums = step(state, placed)
        return float(jax.device_get(sums["loss"] / sums["count"]))   # sums over the batch

    times, first, loss = _time_steps(run, steps)
    device = jax.devices()[0]
    peak_device = (device.memory_stats() or {}).get("peak_bytes_in_use") if device.platform != "cpu" else None
    return _result(times, first, loss, peak_device, platform=device.platform, settings=settings,
                   versions={"jax": jax.__version__})


def _torch_worker(framework: str, model: str, batch: int, steps: int, device: str, width: float) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import torch_models
    from glif_jax.models import get_spec

    torch.set_num_threads(os.cpu_count())
    config = _config(model, width)
    spec = get_spec(config.model.name, **config.model.kwargs.to_dict())
    torch.manual_seed(0)
    network = torch_models.SpikingNetwork(spec, MODELS[model][2], config.model.time_steps,
                                          config.model.init).to(device)
    optimizer = torch_models.paper_sgd(network, base_lr=config.optim.base_lr,
                                       weight_decay=config.optim.weight_decay,
                                       gate_lr_scale=config.optim.gate_lr_scale)
    forward = torch.compile(network) if framework == "torch.compile" else network
    images, labels = _batch_arrays(model, batch, config)
    channels_first = (0, 3, 1, 2) if images.ndim == 4 else (0, 1, 4, 2, 3)
    inputs = torch.from_numpy(images.transpose(channels_first).copy()).to(device)
    targets = torch.from_numpy(labels.astype("int64")).to(device)
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(inputs), targets)
        loss.backward()
        optimizer.step()
        synchronize()
        return float(loss.detach())

    times, first, loss = _time_steps(run, steps)
    peak_device = torch.cuda.max_memory_allocated() if device == "cuda" else None
    return _result(times, first, loss, peak_device, platform=device, settings=[],
                   versions={"torch": torch.__version__})


def _time_steps(run, steps: int) -> tuple[list[float], float, float]:
    start = time.perf_counter()
    loss = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = run()
        times.append(time.perf_counter() - start)
    return times, first, loss


def _result(times, first, loss, peak_device, **extra) -> dict:
    import resource

    return {"times": times, "first": first, "loss": loss, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_device": peak_device, **extra}


# ---- the driver --------------------------------------------------------------------------
def run_worker(framework: str, model: str, batch: int, steps: int, device: str, width: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--models", model,
               "--batch", str(batch), "--steps", str(steps), "--device", device, "--width", str(width)]
    environment = {key: value for key, value in os.environ.items() if key != "GLIF_JAX_ALLOCATOR_RESTART"}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{framework} {model} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    """CPU model, core count and the vector extensions the benchmark's libraries may use."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}
    flags = set(fields.get("flags", "").split())   # the last core's; all cores alike
    model = fields.get("model name") or platform.processor()
    features = [name for name in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if name in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(features) or 'no x86 vector flags read'}"


def _gib(value) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def report(model: str, batch: int, time_steps: int, results: dict[str, list[dict]], device: str) -> str:
    memory_key = "peak_device" if device == "cuda" else "peak_rss"
    memory_name = "device peak GiB" if device == "cuda" else "peak RSS GiB"
    steps = sum(len(run["times"]) for run in next(iter(results.values())))
    lines = [f"\n{model}  (batch {batch}, T = {time_steps}; {steps} steps per framework)",
             f"  {'':17s} {'step min s':>10s} {'median s':>9s} {'first call s':>12s} {memory_name:>15s}  loss"]
    summary = {}
    for framework, runs in results.items():
        times = [t for run in runs for t in run["times"]]
        memory = max(run[memory_key] or 0 for run in runs) or None
        summary[framework] = (min(times), statistics.median(times), min(run["first"] for run in runs), memory)
        lines.append(f"  {framework:17s} {summary[framework][0]:10.3f} {summary[framework][1]:9.3f} "
                     f"{summary[framework][2]:12.2f} {_gib(memory):>15s}  {runs[-1]['loss']:.4f}")
    for name in (framework for framework in summary if framework.startswith("glif-jax ") and
                 framework != "glif-jax no remat" and "glif-jax" in summary):
        ours, glif = summary[name], summary["glif-jax"]
        lines.append(f"  {name} vs glif-jax (GLIF): time {ours[0] / glif[0]:.2f}× (min), {ours[1] / glif[1]:.2f}× "
                     f"(median); first call {ours[2] / glif[2]:.2f}×; memory "
                     f"{ours[3] / glif[3] if ours[3] and glif[3] else float('nan'):.2f}×")
    for name in (framework for framework in summary if framework.startswith("glif-jax")):
        ours = summary[name]
        for reference in (reference for reference in REFERENCES if reference in summary):
            theirs = summary[reference]
            memory = f"{ours[3] / theirs[3]:.2f}" if ours[3] and theirs[3] else "—"
            lines.append(f"  {name} vs {reference}: speed-up {theirs[0] / ours[0]:.2f} (min), "
                         f"{theirs[1] / ours[1]:.2f} (median); first call {ours[2] / theirs[2]:.2f}×; "
                         f"memory {memory}×")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=list(FRAMEWORKS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 16/8 CPU, 64/32 GPU)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per framework and model")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process, after the first call")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (1 = the paper's networks)")
    parser.add_argument("--quick", action="store_true", help="width 0.125, batch 2, 1 round of 2 steps")
    parser.add_argument("--neurons", nargs="+", default=[],
                        help="also time the glif-jax step with these registered neurons instead of GLIF")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.frameworks = list(args.frameworks) + [f"glif-jax {neuron}" for neuron in args.neurons]
    if args.quick:
        args.width, args.batch, args.rounds, args.steps = 0.125, 2, 1, 2

    if args.worker:
        model = args.models[0]
        print(json.dumps(worker(args.worker, model, args.batch, args.steps, args.device, args.width)))
        return

    print(f"# {' '.join(sys.argv)}")
    print(f"# {machine()}; device {args.device}; {time.strftime('%Y-%m-%d %H:%M')}")
    shuffle = random.Random(0).shuffle
    for model in args.models:
        kind = MODELS[model][1]
        batch = args.batch or (GPU_BATCH if args.device == "cuda" else CPU_BATCH)[kind]
        results: dict[str, list[dict]] = {framework: [] for framework in args.frameworks}
        for _ in range(args.rounds):
            order = list(args.frameworks)
            shuffle(order)
            for framework in order:
                results[framework].append(run_worker(framework, model, batch, args.steps, args.device, args.width))
        glif_runs = [runs for framework, runs in results.items() if framework.startswith("glif-jax")]
        if glif_runs:
            run = glif_runs[0][0]
            print(f"# glif-jax: jax {run['versions']['jax']} on {run['platform']}; process settings: "
                  f"{', '.join(run['settings']) or 'none'}")
        time_steps = _config(model, args.width).model.time_steps
        print(report(model, batch, time_steps, results, args.device), flush=True)


if __name__ == "__main__":
    main()
