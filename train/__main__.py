"""`python -m glif_jax.train --config configs/<name>.py --workdir DIR ...` — the same as `glif-train`."""

from glif_jax.train.cli import train_main

if __name__ == "__main__":
    train_main()
