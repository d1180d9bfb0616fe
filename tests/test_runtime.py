"""glif_jax.train.runtime: the CPU settings glif-train applies, their effect and their numerics.

XLA reads its flags and glibc its allocator settings once per process, so every check runs
in fresh subprocesses (``python -m tests.test_runtime MODE OUT``): one with the defaults
("plain": only ``import glif_jax``), one after :func:`glif_jax.train.runtime.configure_for_training`
("tuned"; it starts the subprocess again with ``GLIBC_TUNABLES`` set).

Numerics: the settings move convolutions from YNNPACK to Eigen, which sums in another
order. Each side computes, from the same inputs, a 3×3 convolution's output and both of
its gradients, tdBN's output and gradients, and one whole train step of a narrow
ResNet-18 (T = 2) — logits, loss, and the gradients of every parameter. They must agree
to float32 rounding: convolution and BN results within 1e-5 of their largest magnitude,
the network's logits within 1e-5 and each parameter's gradient within 1e-4 of its largest
entry (measured: about 1e-6 everywhere; the margin is for a spike whose threshold a
rounding difference crosses, which changes a few gradient entries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.comparison import relative_difference
from glif_jax.train import runtime

REPO = Path(__file__).resolve().parents[1]
OP_TOLERANCE = 1e-5
LOGIT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def _run(mode: str, out: Path, **env) -> dict:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("XLA_FLAGS", "GLIBC_TUNABLES", "GLIF_JAX_ALLOCATOR_RESTART")}
    environment.update(env, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "tests.test_runtime", mode, str(out)], cwd=REPO,
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    return {mode: (_run(mode, folder / f"{mode}.npz"), np.load(folder / f"{mode}.npz"))
            for mode in ("plain", "tuned")}


HUGE_PAGES = runtime.huge_pages_available()
MADVISE_ONLY = HUGE_PAGES and "[madvise]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()


def test_plain_import_changes_nothing(runs):
    report, _ = runs["plain"]
    assert report["xla_flags"] == "" and report["glibc_tunables"] == ""
    if MADVISE_ONLY:   # huge pages only where asked for: a plain process gets none
        assert report["huge_page_mib"] == 0


def test_training_settings_are_applied(runs):
    report, _ = runs["tuned"]
    assert report["xla_flags"] == " ".join(runtime.XLA_CPU_FLAGS)
    assert "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE" in runtime.XLA_CPU_FLAGS
    if HUGE_PAGES:   # the process started again with the tunable, and malloc's big buffers got huge pages
        assert report["changed"] == ["GLIBC_TUNABLES=glibc.malloc.hugetlb=1", *runtime.XLA_CPU_FLAGS]
        assert report["glibc_tunables"] == "glibc.malloc.hugetlb=1"
        assert report["huge_page_mib"] >= 128
    else:
        assert report["changed"] == list(runtime.XLA_CPU_FLAGS)


def test_the_flags_reach_the_compiler(runs):
    """Plain: the convolution is a YNNPACK fusion. Tuned: a plain convolution, while the
    reductions stay YNNPACK fusions."""
    plain, _ = runs["plain"]
    tuned, _ = runs["tuned"]
    assert plain["ynn_convolutions"] > 0
    assert tuned["ynn_convolutions"] == 0 and tuned["convolutions"] > 0
    assert tuned["ynn_reductions"] > 0


def test_user_flags_win(tmp_path):
    """A flag the user set keeps the user's value; the others are still added."""
    users = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"
    report = _run("tuned", tmp_path / "user.npz", XLA_FLAGS=users,
                  GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576")
    others = [flag for flag in runtime.XLA_CPU_FLAGS if not flag.startswith(users.split("=")[0])]
    assert report["changed"] == others
    assert report["glibc_tunables"] == "glibc.malloc.mmap_threshold=1048576"
    assert report["xla_flags"] == " ".join([users, *others])
    assert report["ynn_convolutions"] > 0


@pytest.mark.parametrize("name", ["conv_out", "conv_dx", "conv_dw", "bn_out", "bn_dx", "bn_dscale"])
def test_convolution_and_batch_norm_agree(runs, name):
    assert relative_difference(runs["tuned"][1][name], runs["plain"][1][name]) <= OP_TOLERANCE


def test_network_logits_and_loss_agree(runs):
    plain, tuned = runs["plain"][1], runs["tuned"][1]
    assert relative_difference(tuned["net_logits"], plain["net_logits"]) <= LOGIT_TOLERANCE
    assert abs(float(tuned["net_loss"]) - float(plain["net_loss"])) <= LOGIT_TOLERANCE * abs(float(plain["net_loss"]))


def test_network_gradients_agree(runs):
    plain, tuned = runs["plain"][1], runs["tuned"][1]
    names = sorted(name for name in plain.files if name.startswith("grad/"))
    assert names == sorted(name for name in tuned.files if name.startswith("grad/"))
    assert len(names) > 50
    worst = max((relative_difference(tuned[name], plain[name]), name) for name in names)
    assert worst[0] <= GRADIENT_TOLERANCE, worst


# ---- the subprocess --------------------------------------------------------------------
def _huge_page_mib() -> float:
    """Allocate and touch 256 MiB through malloc; how much of it came as transparent huge pages."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = _anon_huge_pages_mib()
    pointer = libc.malloc(256 << 20)
    ctypes.memset(pointer, 1, 256 << 20)
    grown = _anon_huge_pages_mib() - before
    libc.free(pointer)
    return grown


def _anon_huge_pages_mib() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _subprocess(mode: str, out: str) -> None:
    changed = []
    if mode == "tuned":
        from glif_jax.train import runtime

        changed = runtime.configure_for_training()
    else:
        import glif_jax  # noqa: F401  (a plain import must change nothing)
        import glif_jax.models  # noqa: F401
    import functools

    import jax
    import jax.numpy as jnp

    from glif_jax import models
    from glif_jax.layers import TdBatchNorm
    from glif_jax.train.steps import train_step
    from glif_jax.train.state import create_train_state
    from glif_jax.optim import torch_sgd

    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    results = {}

    x = jax.random.normal(keys[0], (8, 16, 16, 32))
    kernel = jax.random.normal(keys[1], (3, 3, 32, 48)) * 0.1
    conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1), padding=((1, 1), (1, 1)),
                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv_out, conv_vjp = jax.vjp(conv, x, kernel)
    results["conv_out"] = conv_out
    results["conv_dx"], results["conv_dw"] = conv_vjp(jax.random.normal(keys[2], conv_out.shape))

    bn = TdBatchNorm(k=0.7)
    features = jax.random.normal(keys[3], (2, 4, 8, 8, 48)) * 3 + 1
    variables = bn.init(keys[4], features, use_running_average=False)

    def bn_loss(params, inputs):
        y, _ = bn.apply({"params": params, "batch_stats": variables["batch_stats"]}, inputs,
                        use_running_average=False, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(y)), y

    (_, results["bn_out"]), (bn_grads, results["bn_dx"]) = jax.value_and_grad(
        bn_loss, argnums=(0, 1), has_aux=True)(variables["params"], features)
    results["bn_dscale"] = bn_grads["scale"]

    model = models.get_model("resnet18", num_classes=10, time_steps=2, width_multiplier=0.125)
    optimizer = torch_sgd(0.1, momentum=0.9)
    state = create_train_state(model, optimizer, rng=keys[5], input_shape=(16, 16, 3))
    images = jax.random.normal(keys[6], (4, 16, 16, 3))
    labels = jnp.arange(4) % 10

    def loss_fn(params):
        logits, _ = model.apply({"params": params, "batch_stats": state.batch_stats}, images, train=True,
                                mutable=["batch_stats"])
        return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1)), logits

    (loss, logits), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.params)
    results["net_logits"], results["net_loss"] = logits, loss
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        results["grad/" + jax.tree_util.keystr(path)] = leaf
    step = jax.jit(functools.partial(train_step, model=model, optimizer=optimizer))
    hlo = step.lower(state, {"image": images, "label": labels}).compile().as_text()

    np.savez(out, **{name: np.asarray(value) for name, value in results.items()})
    print(json.dumps({
        "changed": changed,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "huge_page_mib": _huge_page_mib(),
        "convolutions": hlo.count(" convolution("),
        "ynn_convolutions": sum("convolution(" in line for line in _ynn_fusion_bodies(hlo)),
        "ynn_reductions": sum(" reduce(" in line for line in _ynn_fusion_bodies(hlo)),
    }))


def _ynn_fusion_bodies(hlo: str) -> list[str]:
    """The instruction lines inside the computations that YNNPACK fusions call."""
    called = {name for line in hlo.splitlines() if "ynn_fusion" in line and "calls=" in line
              for name in [line.split("calls=")[1].split(",")[0].split(")")[0].strip().lstrip("%")]}
    lines, inside = [], False
    for line in hlo.splitlines():
        if line and not line.startswith(" "):
            inside = line.split(" ")[0].lstrip("%") in called
        elif inside:
            lines.append(line)
    return lines


if __name__ == "__main__":
    _subprocess(sys.argv[1], sys.argv[2])


@pytest.mark.parametrize("setup", ["restart=False", "interactive"])
def test_no_restart_when_asked_or_interactive(setup):
    """``restart=False`` and an interactive session (a REPL, IPython, Jupyter) keep the process:
    the XLA flags are set, the allocator setting is skipped, and the code before the call runs once."""
    script = (
        "import os, sys\n"
        "print('started', flush=True)\n"
        + ("sys.ps1 = '>>> '\n" if setup == "interactive" else "")
        + "from glif_jax.train import runtime\n"
        + f"applied = runtime.configure_for_training({'restart=False' if setup == 'restart=False' else ''})\n"
        + "print(applied, os.environ.get('GLIBC_TUNABLES'), os.environ.get('GLIF_JAX_ALLOCATOR_RESTART'))\n"
    )
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("XLA_FLAGS", "GLIBC_TUNABLES", "GLIF_JAX_ALLOCATOR_RESTART")}
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines.count("started") == 1
    assert lines[-1] == f"{list(runtime.XLA_CPU_FLAGS)} None None"
