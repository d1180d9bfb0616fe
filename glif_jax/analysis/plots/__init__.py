"""Figures of the learned GLIF parameters and firing rates (matplotlib, no pyplot)."""

from glif_jax.extras import require

require("matplotlib", "plot", "The glif-plot figures")
