"""Figures of the learned GLIF parameters and firing rates (matplotlib, no pyplot)."""
