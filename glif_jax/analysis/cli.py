"""``glif-plot``: the learned-parameter figures of a training run, in one command (the paper's appendix A.1).

    glif-plot <workdir or checkpoint> --out DIR [--checkpoint latest|best] [--step N] [--pdf]
              [--batch-size N] [--data-dir DIR]

``glif_jax.train.cli.plot_main`` calls :func:`main` with the arguments after the program name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

EXIT_FAILURE = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Draws the learned neuron parameters of a glif-train run (the paper's appendix A.1; any
neuron: GLIF, PLIF, a neuron of your own) and writes them as tidy tables:

  gates.png         the neuron's gates; GLIF: α (leak: exponential vs linear), β (integration:
                    conductance vs plain), γ (reset: hard vs soft) per layer, distribution over
                    channels, initial range shaded (the paper's Fig. 1)
  primitives.png    the other parameters; GLIF: τ_exp, τ_lin, V_th, V_re per layer, same style,
                    initial value dashed (Fig. 2)
  conductance.png   GLIF's g^t per layer and time step (X_per_step.png for another neuron's
                    per-time-step parameter X; neuron_weights.png for its "weights" group)
  evolution.png     median and interquartile range per layer vs epoch, from the
                    initialisation over every checkpoint of the run
  firing_rates.png  firing rates per layer and time step, silent and saturated channels, on
                    one batch of the evaluation split (needs the dataset)
  learned_values.csv/.json, learned_summary.csv/.json, firing_rates.csv  (pandas.read_csv)

All values are the constrained ones the neuron uses (GLIF: the sigmoid of the stored logits,
in (0, 1)); a figure of a group the neuron has no parameters in is not written.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glif-plot", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a glif-train work directory, its checkpoints/ directory, or one "
                                     "checkpoint directory (checkpoints/<step>)")
    parser.add_argument("--out", required=True, help="directory for the figures and tables (created)")
    parser.add_argument("--checkpoint", choices=("latest", "best"), default="latest",
                        help="which checkpoint of a work directory to describe: the newest or the one with the best "
                             "test top-1 (default: latest)")
    parser.add_argument("--step", type=int, default=None, help="the step of that checkpoint (default: newest)")
    parser.add_argument("--pdf", action="store_true", help="also write every figure as PDF")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="evaluation examples for the firing-rate figure (0: skip it; default 32)")
    parser.add_argument("--data-dir", default=None, help="dataset location, overriding the run's config")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``glif-plot`` with ``argv`` (without the program name); returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_request:  # --help (0) or a usage error (2, message already printed)
        return int(exit_request.code or 0)
    if args.batch_size < 0:
        print("glif-plot: error: --batch-size must be >= 0", file=sys.stderr)
        return EXIT_USAGE

    from glif_jax.analysis.report import ReportOptions, write_report
    from glif_jax.checkpoint import CheckpointError
    from glif_jax.workdir import WorkdirError

    logging.basicConfig(level=logging.WARNING, format="glif-plot: %(levelname)s: %(message)s")
    options = ReportOptions(which=args.checkpoint, step=args.step,
                            formats=("png", "pdf") if args.pdf else ("png",),
                            batch_size=args.batch_size, data_dir=args.data_dir)
    try:
        written = write_report(args.path, args.out, options)
    except (CheckpointError, WorkdirError, ValueError) as error:
        print(f"glif-plot: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"glif-plot: {len(written)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
