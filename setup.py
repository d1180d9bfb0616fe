"""The package layout and the optional C++ CPU kernel of the neuron's time loop.

Layout: the repository keeps the training system and the experiment configs in the top-level
folders train/ and configs/; installed, they are the subpackages glif_jax.train and
glif_jax.configs, so that no generic top-level module name (``train``, ``configs``) lands in
site-packages. Everything else about the package is in pyproject.toml.

The kernel (see glif_jax/cpu_kernel.py) compiles against the XLA
FFI headers that ship inside jaxlib; if it cannot be built (no C++ compiler), the install
still succeeds and glif_jax falls back to its pure-XLA implementation.
"""

import os

import jaxlib
from setuptools import Extension, find_packages, setup

MAPPED_FOLDERS = {"glif_jax.train": "train", "glif_jax.configs": "configs"}

XLA_FFI_HEADERS = os.path.join(os.path.dirname(jaxlib.__file__), "include")

setup(
    packages=find_packages(include=["glif_jax", "glif_jax.*"]) + list(MAPPED_FOLDERS),
    package_dir=MAPPED_FOLDERS,
    ext_modules=[
        Extension(
            "glif_jax._glif_cpu",
            sources=["glif_jax/csrc/glif_cpu.cc"],
            language="c++",
            # -isystem: the XLA headers' own warnings are not ours; -ffp-contract=off: no fused
            # multiply-adds, so the kernel rounds exactly like the XLA path (bit-identical spikes)
            extra_compile_args=["-std=c++17", "-O3", "-ffp-contract=off", "-fvisibility=hidden",
                                "-isystem", XLA_FFI_HEADERS],
            optional=True,
        )
    ]
)
