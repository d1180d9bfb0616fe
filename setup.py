"""Builds the optional C++ CPU kernel of the neuron's time loop (see glif_jax/cpu_kernel.py).

Everything else about the package is in pyproject.toml. The kernel compiles against the XLA
FFI headers that ship inside jaxlib; if it cannot be built (no C++ compiler), the install
still succeeds and glif_jax falls back to its pure-XLA implementation.
"""

import os

import jaxlib
from setuptools import Extension, setup

XLA_FFI_HEADERS = os.path.join(os.path.dirname(jaxlib.__file__), "include")

setup(
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
