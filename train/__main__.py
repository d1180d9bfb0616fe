"""`python -m train --config configs/<name>.py --workdir DIR ...` — the same as `glif-train`."""

from train.cli import train_main

if __name__ == "__main__":
    train_main()
