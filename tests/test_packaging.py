"""The distribution: what a wheel and an sdist contain, the extras, and the errors that name them.

Builds the wheel and the sdist once (no build isolation: the installed setuptools and jaxlib)
and reads their file lists and metadata as pip would.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import glif_jax
from glif_jax import extras

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    for command in ([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                     "-q", "-w", str(out)],
                    [sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"]):
        built = subprocess.run(command, cwd=REPO, timeout=900, capture_output=True, text=True)
        assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    wheel, = out.glob("*.whl")
    sdist, = out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_installs_only_the_glif_jax_package(dist):
    """No generic top-level modules (train, configs, tests, benchmarks): train/ and configs/
    are inside glif_jax; the kernel source, py.typed and the license ship."""
    names = zipfile.ZipFile(dist[0]).namelist()
    assert {name.split("/")[0] for name in names} == {"glif_jax", f"glif_jax-{glif_jax.__version__}.dist-info"}
    for expected in ("glif_jax/csrc/glif_cpu.cc", "glif_jax/py.typed", "glif_jax/train/cli.py",
                     "glif_jax/train/__main__.py", "glif_jax/configs/default.py", "glif_jax/configs/base.py",
                     f"glif_jax-{glif_jax.__version__}.dist-info/licenses/LICENSE"):
        assert expected in names, expected
    assert not [name for name in names if "/tests/" in name or name.endswith("conftest.py")]


def test_the_wheel_metadata_declares_the_extras_and_entry_points(dist):
    archive = zipfile.ZipFile(dist[0])
    info = f"glif_jax-{glif_jax.__version__}.dist-info"
    metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    assert metadata["Version"] == glif_jax.__version__
    assert metadata["Requires-Python"] == ">=3.11"
    assert set(metadata.get_all("Provides-Extra")) >= {"train", "cifar", "imagenet", "dvs", "plot", "all", "test",
                                                       "docs"}
    core = [req for req in metadata.get_all("Requires-Dist") if "extra ==" not in req]
    assert sorted(req.split("<")[0].split(">")[0].split("=")[0] for req in core) == [
        "flax", "jax", "jaxlib", "numpy", "optax"]
    heavy = [req for req in metadata.get_all("Requires-Dist") if req.startswith(("tensorflow", "tonic", "orbax"))]
    assert heavy and all("extra ==" in req for req in heavy)
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    for command in ("glif-train = glif_jax.train.cli:train_main", "glif-eval = glif_jax.train.cli:eval_main",
                    "glif-plot = glif_jax.train.cli:plot_main"):
        assert command in entry_points


def test_the_sdist_builds_everything_again(dist):
    names = {name.split("/", 1)[1] for name in tarfile.open(dist[1]).getnames() if "/" in name}
    for expected in ("setup.py", "pyproject.toml", "LICENSE", "README.md", "glif_jax/csrc/glif_cpu.cc",
                     "train/cli.py", "configs/default.py", "glif_jax/py.typed"):
        assert expected in names, expected


@pytest.mark.parametrize("missing, call, extra", [
    ("tonic", lambda: __import__("glif_jax.data.dvs", fromlist=["x"]).class_names(), "dvs"),
    ("tensorflow", lambda: __import__("glif_jax.data.tf_host", fromlist=["x"]).import_tensorflow(), "cifar"),
    ("sklearn", lambda: __import__("glif_jax.data.digits", fromlist=["x"]).load_split("train"), "train"),
    ("pandas", lambda: __import__("glif_jax.analysis.tables", fromlist=["x"]).values_table([]), "plot"),
])
def test_a_feature_without_its_extra_names_the_extra(monkeypatch, missing, call, extra):
    """A missing optional package (simulated: ``sys.modules[name] = None`` makes importing it
    fail) gives an ImportError that says which extra to install."""
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    if missing == "tensorflow":
        __import__("glif_jax.data.tf_host", fromlist=["x"]).import_tensorflow.cache_clear()
    with pytest.raises(extras.MissingExtraError, match=rf"\[{extra}\] extra: pip install 'glif-jax\[{extra}\]'"):
        call()


def test_the_training_system_without_its_extra_names_it():
    """``glif-train`` on a core-only install: importing glif_jax.train fails naming [train];
    the core (neuron, layers, models, optimiser) imports without any training package."""
    script = """
import sys
for name in ("orbax", "ml_collections", "tensorboard", "tqdm", "sklearn", "tensorflow", "tonic", "matplotlib",
             "pandas"):
    sys.modules[name] = None
import glif_jax, glif_jax.layers, glif_jax.models, glif_jax.optim
glif_jax.glif
try:
    import glif_jax.train.cli
except ImportError as error:
    print(type(error).__name__, error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=REPO.parent)
    assert result.returncode == 0, result.stderr
    assert "MissingExtraError" in result.stdout
    assert "pip install 'glif-jax[train]'" in result.stdout
