"""Experiment configs, installed as ``glif_jax.configs``: one file per experiment, each with
``get_config() -> ConfigDict``.

The shared recipe lives in ``configs/base.py``; the files only pick dataset, model and T.
"""
