"""Train the default experiment from Python instead of the ``glif-train`` command line.

What ``glif-train --config configs/default.py --workdir DIR --config.num_epochs=3 ...`` does,
as a script: load the default config (scikit-learn's digits, the small ``tiny_convnet`` with
GLIF neurons, T = 4, SGD with per-group cosine schedules), shorten it, and call
``train_and_evaluate``. The returned dict holds the final test accuracy; the work directory
holds ``metrics.jsonl``, TensorBoard logs and orbax checkpoints (see the project's README,
"The work directory").

    python examples/train_from_python.py --epochs 3 --steps-per-epoch 30
    python examples/train_from_python.py --workdir runs/from_python    # keep the run
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Sequence

from glif_jax.train import runtime


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="work directory of the run (must hold no checkpoints); default: a "
                             "temporary directory, deleted at the end")
    parser.add_argument("--epochs", type=int, default=3, help="config.num_epochs (the default config has 15)")
    parser.add_argument("--steps-per-epoch", type=int, default=30,
                        help="config.steps_per_epoch (default config: one pass over the 1437 training digits)")
    parser.add_argument("--eval-steps", type=int, default=None,
                        help="config.eval_steps, batches of 128 test digits (default: all 360)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-step log lines")
    return parser.parse_args(argv)


def train(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Loads, shortens and trains the default config in ``workdir``; returns the final metrics."""
    # Imported only after configure_for_training(), which may restart the process: the
    # training modules (TensorFlow datasets, orbax, ...) are then loaded once, not twice.
    from glif_jax.configs import default
    from glif_jax.train.train import train_and_evaluate

    config = default.get_config()   # a locked ConfigDict: existing keys can be set, a misspelt one raises
    config.num_epochs = args.epochs
    config.steps_per_epoch = args.steps_per_epoch
    config.eval_steps = args.eval_steps
    config.seed = args.seed
    config.log_every_steps = args.steps_per_epoch   # one train log line per epoch
    print(f"training {config.model.name} on {config.dataset.name}, T = {config.model.time_steps}: "
          f"{config.num_epochs} epochs x {config.steps_per_epoch} steps of batch {config.batch_size}")
    return train_and_evaluate(config, workdir)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    # First thing, before JAX starts its backend: XLA's CPU flags and glibc's huge pages, as
    # glif-train sets them. It may start this script once more (same arguments) and not return
    # in the first process, so nothing before it should have side effects.
    settings = runtime.configure_for_training()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax", "orbax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print("process settings for speed:", ", ".join(settings) or "none applicable")

    if args.workdir is not None:
        results = train(args, args.workdir)
        files = sorted(path.name for path in args.workdir.iterdir())
    else:
        with tempfile.TemporaryDirectory(prefix="glif_jax_example_") as workdir:
            results = train(args, Path(workdir))
            files = sorted(path.name for path in Path(workdir).iterdir())

    print("work directory:", ", ".join(files))
    print(f"final step {int(results['step'])}, train loss {results['train_loss']:.4f}, "
          f"test loss {results['eval_loss']:.4f}")
    print(f"test top-1 {results['eval_top1']:.4f} on {int(results['eval_count'])} digits "
          f"(best epoch {results['best_eval_top1']:.4f}; chance 0.1)")
    return results


if __name__ == "__main__":
    main()
