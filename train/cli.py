"""Command lines: ``glif-train`` (= ``python -m glif_jax.train``), ``glif-eval`` and ``glif-plot``.

Flags are absl flags with ``ml_collections.config_flags``: ``--config FILE`` loads a
config file's ``get_config()``, ``--config.<key>=<value>`` overrides one value. Each
command parses its own ``FlagValues``, so ``--help`` lists only its flags, and bad
input ends the program with exit status 2 and a one-line message (no traceback).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from glif_jax.train import runtime

EXIT_USAGE = 2
EXIT_FAILURE = 1

TRAIN_USAGE = """\
usage: glif-train --config configs/<name>.py --workdir DIR [--config.<key>=<value> ...]
                  [--resume[=yes|auto|no]] [--allow_config_change] [--init-from FILE]
                  [--distributed] [--coordinator_address HOST:PORT --num_processes N --process_id I]
       (python -m glif_jax.train takes the same flags)

Trains the model, dataset and recipe a config file describes, evaluating on the test
split after every epoch, and prints the final test accuracy.

Exit status: 0 when training finished; 1 on an error (e.g. the loss became NaN or
infinite: the step is named and the checkpoints before it are kept); 2 on a bad command
line or config; 143 (SIGTERM) or 130 (SIGINT) after saving a checkpoint on that signal —
the run continues with the same command plus --resume=auto.

  --config FILE            a Python file with get_config() -> ConfigDict (configs/*.py;
                           configs/default.py: digits + tiny_convnet, minutes on a CPU).
  --config.<key>=<value>   override one config value, e.g. --config.num_epochs=3
                           --config.batch_size=128 --config.model.time_steps=2
                           --config.model.neuron.gates=hard --config.half_precision=True
                           --config.parallel=mesh --config.dataset.data_dir=/data
                           Unknown keys and invalid values are rejected. Show every key
                           and its value with: glif-train --config FILE --help
  --workdir DIR            where the run lives: config.json, metrics.jsonl (one JSON
                           record per log: step, split, loss, top1, top5, images_per_second,
                           lr/<group>), tensorboard/ (tensorboard --logdir DIR),
                           checkpoints/<step> (the newest checkpoint.keep and the best).
  --resume[=yes]           continue the run in DIR from its newest intact checkpoint; the
                           result is identical to an uninterrupted run. A config that changes
                           the training (model, data, batch size, epochs, optimiser, seed, ...)
                           is refused; logging, evaluation and checkpoint settings may change.
  --resume=auto            continue when DIR holds a checkpoint, start otherwise: the command
                           for a job that a cluster may preempt and requeue.
  --resume=no              (default) start a new run; a DIR with checkpoints is refused.
  --allow_config_change    resume even though the config changes the training (recorded in
                           DIR/config_history.jsonl).
  --init-from FILE         start a new run from the parameters and tdBN statistics of one of
                           the authors' trained checkpoints (CAS-CLab/Gated-LIF .pth/.pth.tar;
                           read without PyTorch); the config must name its architecture and
                           T, its width is taken from the file.
  --distributed            start jax.distributed first (a multi-process run): every process
                           runs the same command and reads its own shard of the data; only
                           process 0 writes DIR. Without the three flags below JAX detects
                           them (SLURM, Open MPI, Kubernetes, Cloud TPU).
  --coordinator_address HOST:PORT  --num_processes N  --process_id I
                           a multi-process run started by hand (implies --distributed); the
                           same as JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID.
  --heartbeat_timeout_seconds S
                           stop every process when one is silent this long (JAX's default: 100).

Important config keys: seed, num_epochs, batch_size (global, all devices),
eval_batch_size, steps_per_epoch (None = dataset size // batch_size), eval_steps (None =
whole test split), log_every_steps, half_precision (bfloat16 compute, float32 params),
parallel ("none" | "pmap" | "mesh": data parallel over all devices), spike_stats (log
per-layer firing rates), checkpoint.every_epochs / every_steps / keep / async_save,
nonfinite.action ("stop" at a non-finite loss | "skip" such steps) /
max_consecutive_skips, model.* (name,
time_steps, neuron.kind/gates/...), dataset.* (name, data_dir, augment), optim.* (base_lr,
momentum, weight_decay, gate_lr_scale, cosine_period_epochs, step_schedule_per).
"""

EVAL_USAGE = """\
usage: glif-eval --workdir DIR [--checkpoint best|latest] [--step N] [--config.<key>=<value> ...]
       glif-eval --from-gated-lif FILE --config configs/<name>.py [--workdir DIR] [--config.<key>=<value> ...]

Evaluates a checkpoint of a glif-train run on the test split and prints loss, top-1 and
top-5 accuracy. The run's config is read from DIR/config.json; --config.<key>=<value>
overrides values of it (e.g. --config.dataset.data_dir=/data --config.eval_batch_size=200
--config.parallel=none).

  --workdir DIR            the glif-train work directory.
  --checkpoint best|latest which checkpoint (default: best, the best eval top-1).
  --step N                 a specific step of that kind instead of the newest.
  --from-gated-lif FILE    evaluate one of the authors' trained checkpoints (CAS-CLab/Gated-LIF
                           .pth/.pth.tar, read without PyTorch) on the test split of --config,
                           whose architecture and T it must hold. With --workdir DIR it is also
                           kept there as a glif-jax run (for glif-plot DIR, or glif-train
                           --resume to fine-tune).
  --distributed, --coordinator_address, --num_processes, --process_id,
  --heartbeat_timeout_seconds
                           a multi-process evaluation, as for glif-train.
"""


class UsageError(Exception):
    """Bad command line; the message is printed after the program name."""


# ---- entry points ----------------------------------------------------------------------
def train_main(argv: Sequence[str] | None = None) -> None:
    """``glif-train``: parse, validate, train, print the final accuracy."""
    settings = runtime.configure_for_training()   # before NumPy and JAX are imported
    status = _run("glif-train", _train, sys.argv if argv is None else list(argv), settings)
    if status == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # the run is complete: a preemption now loses nothing
    sys.exit(status)


def eval_main(argv: Sequence[str] | None = None) -> None:
    """``glif-eval``: evaluate a checkpoint of a workdir."""
    settings = runtime.configure_for_training()
    sys.exit(_run("glif-eval", _eval, sys.argv if argv is None else list(argv), settings))


def plot_main(argv: Sequence[str] | None = None) -> None:
    """``glif-plot``: the learned-parameter figures (the paper's appendix A.1), from ``glif_jax.analysis.cli``."""
    try:
        from glif_jax.analysis import cli as analysis_cli
    except ImportError as error:
        print(f"glif-plot: the analysis package is not available ({error})", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    argv = sys.argv if argv is None else list(argv)
    imported = next((arg for arg in argv[1:] if arg.endswith((".pth", ".pth.tar")) and not arg.startswith("-")), None)
    if imported is None:
        sys.exit(analysis_cli.main(argv[1:]))
    settings = runtime.configure_for_training(restart=False)
    sys.exit(_run("glif-plot", lambda args: _plot_imported(args, imported, analysis_cli.main), argv, settings))


def _run(program: str, command: Callable[[list[str]], int | None], argv: list[str],
         speed_settings: list[str] | None = None) -> int:
    """Runs ``command(argv)``; its exit status (None: 0), or a one-line error and its status."""
    from glif_jax.checkpoint import CheckpointError
    from glif_jax.distributed import LaunchError
    from glif_jax.gated_lif import GatedLIFFormatError
    from glif_jax.workdir import WorkdirError
    from glif_jax.train.stop_signals import RunInterrupted
    from glif_jax.train.train import TrainingDiverged
    from glif_jax.train.validation import ConfigError

    _setup_logging()
    if speed_settings:
        logging.getLogger(program).info("process settings for speed: %s", ", ".join(speed_settings))
    try:
        return command(argv) or 0
    except (UsageError, ConfigError, LaunchError, flags.Error) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        print(f"(see {program} --help)", file=sys.stderr)
        return EXIT_USAGE
    except (CheckpointError, WorkdirError, OSError, TrainingDiverged, GatedLIFFormatError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except RunInterrupted as stop:
        print(f"{program}: {stop}", file=sys.stderr)
        return stop.exit_status
    except Exception as error:
        from glif_jax import distributed

        if not distributed.is_peer_failure(error):
            raise
        print(f"{program}: error: {distributed.peer_failure_message(error)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # at a normal exit jax.distributed's shutdown would wait for the dead process at a barrier
        os._exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        print(f"{program}: interrupted at once, without a checkpoint (continue from the last one "
              "with --resume=auto)", file=sys.stderr)
        return 130


def _setup_logging() -> None:
    logging.basicConfig(  # force: replace the handler absl puts on the root logger
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
        force=True,
    )
    for noisy in ("absl", "jax", "orbax", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---- glif-train ------------------------------------------------------------------------
def _train(argv: list[str]) -> None:
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "config file (configs/<name>.py)", flag_values=values, sys_argv=argv
    )
    flags.DEFINE_string("workdir", None, "work directory of the run", flag_values=values)
    flags.DEFINE_enum("resume", "no", RESUME_CHOICES, "continue from the newest checkpoint in --workdir: "
                      "yes | auto (if there is one) | no", flag_values=values)
    flags.DEFINE_bool("allow_config_change", False, "resume even with a config that changes the training",
                      flag_values=values)
    flags.DEFINE_string("init_from", None, "start from one of the authors' checkpoints (.pth/.pth.tar)",
                        flag_values=values)
    _define_launch_flags(values)
    _parse(values, _resume_flag_spelled_out(argv), TRAIN_USAGE, base_config=lambda: _file_config(argv))
    if values["config"].value is None:
        raise UsageError("--config FILE is required")
    config = _loaded_config(values)
    if not values.workdir:
        raise UsageError("--workdir DIR is required")

    from glif_jax.train.stop_signals import StopSignals

    # from here on SIGTERM/SIGINT ask for a checkpoint and a clean stop after the current step
    with StopSignals() as stop_signals:
        _start_distributed(values)
        from glif_jax.train.train import train_and_evaluate

        if values.init_from:
            from glif_jax.train import imported

            config, _ = imported.config_for(config, values.init_from)
        results = train_and_evaluate(config, values.workdir, resume=RESUME_CHOICES[values.resume],
                                     allow_config_change=values.allow_config_change, stop_signals=stop_signals,
                                     init_from=values.init_from)
        print(_summary("final test", results), flush=True)
        print(json.dumps({"final": results}, sort_keys=True), flush=True)


# ---- glif-eval -------------------------------------------------------------------------
def _eval(argv: list[str]) -> None:
    from glif_jax.workdir import load_config

    argv = [_underscored(arg) for arg in argv]
    workdir = _prescan(argv, "workdir")
    if "-h" in argv or "--help" in argv:
        print(EVAL_USAGE)
        raise SystemExit(0)
    if _prescan(argv, "from_gated_lif"):
        return _eval_imported(argv)
    if not workdir:
        raise UsageError("--workdir DIR is required")
    run_config = load_config(workdir)
    values = flags.FlagValues()
    config_flags.DEFINE_config_dict(
        "config", run_config, "the run's config (overridable)", flag_values=values, sys_argv=argv
    )
    flags.DEFINE_string("workdir", None, "work directory of a glif-train run", flag_values=values)
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "which checkpoint", flag_values=values)
    flags.DEFINE_integer("step", None, "step of the checkpoint (default: newest)", flag_values=values)
    _define_launch_flags(values)
    _parse(values, argv, EVAL_USAGE, base_config=lambda: run_config)

    _start_distributed(values)
    from glif_jax.train.train import evaluate_checkpoint

    results = evaluate_checkpoint(values.config, values.workdir, which=values.checkpoint, step=values.step)
    print(_summary(f"{values.checkpoint} checkpoint (step {results['step']}), test", results), flush=True)
    print(json.dumps({"eval": results}, sort_keys=True), flush=True)


# ---- multi-process runs ----------------------------------------------------------------
def _define_launch_flags(values: flags.FlagValues) -> None:
    """--distributed and the three values of a hand-started multi-process run (glif_jax.distributed)."""
    flags.DEFINE_bool("distributed", False, "start jax.distributed first (values detected by JAX)",
                      flag_values=values)
    flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's coordinator "
                        "(or JAX_COORDINATOR_ADDRESS)", flag_values=values)
    flags.DEFINE_integer("num_processes", None, "processes of the run (or JAX_NUM_PROCESSES)", flag_values=values)
    flags.DEFINE_integer("process_id", None, "this process, 0 .. num_processes - 1 (or JAX_PROCESS_ID)",
                         flag_values=values)
    flags.DEFINE_integer("heartbeat_timeout_seconds", None, "stop the run when a process is silent this long "
                         "(JAX's default: 100)", flag_values=values)


def _start_distributed(values: flags.FlagValues) -> None:
    from glif_jax import distributed

    try:
        settings = distributed.launch_settings(
            coordinator_address=values.coordinator_address, num_processes=values.num_processes,
            process_id=values.process_id, heartbeat_timeout_seconds=values.heartbeat_timeout_seconds,
            force=values.distributed,
        )
    except distributed.LaunchError as error:
        raise UsageError(str(error)) from None
    distributed.initialize(settings)


# ---- the authors' checkpoints ----------------------------------------------------------
def _imported_state(config: Any, checkpoint: str) -> tuple[Any, Any, Any, Any]:
    """``config`` adapted to ``checkpoint``, its run options, the experiment and the state
    holding the checkpoint's network (:func:`glif_jax.train.imported.initial_state_from`)."""
    from glif_jax.train import imported
    from glif_jax.train.experiment import build_experiment
    from glif_jax.train.train import initial_state
    from glif_jax.train.validation import validate_config

    config, facts = imported.config_for(config, checkpoint)
    options = validate_config(config)
    experiment = build_experiment(config, options)
    imported.check_classes(facts.num_classes, config, experiment, checkpoint)   # before initialising a model
    state = imported.initial_state_from(config, experiment, initial_state(config, experiment), checkpoint)
    return config, options, experiment, state


def _eval_imported(argv: list[str]) -> None:
    """``glif-eval --from-gated-lif FILE --config CONFIG [--workdir DIR]``."""
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config of the experiment the checkpoint belongs to",
                                    flag_values=values, sys_argv=argv)
    flags.DEFINE_string("from_gated_lif", None, "the authors' checkpoint (.pth/.pth.tar)", flag_values=values)
    flags.DEFINE_string("workdir", None, "keep the imported run here (default: not kept)", flag_values=values)
    _define_launch_flags(values)
    _parse(values, argv, EVAL_USAGE, base_config=lambda: _file_config(argv))
    if values["config"].value is None:
        raise UsageError("--from-gated-lif needs --config FILE: the experiment (dataset, model, T) it belongs to")
    checkpoint = values.from_gated_lif
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--from-gated-lif: no file {checkpoint}")

    _start_distributed(values)
    from glif_jax.train import imported
    from glif_jax.train.train import evaluate_state

    config, options, experiment, state = _imported_state(_loaded_config(values), checkpoint)
    if values.workdir:
        imported.import_to_workdir(config, state, checkpoint, values.workdir)
    results = evaluate_state(config, experiment, state, options.strategy)
    print(_summary(f"{checkpoint}, test", results), flush=True)
    if values.workdir:
        print(f"glif-eval: the imported run is in {values.workdir} (glif-plot {values.workdir} --out ...)", flush=True)
    print(json.dumps({"eval": results}, sort_keys=True), flush=True)


def _plot_imported(argv: list[str], checkpoint: str, plot: Callable[[list[str]], int]) -> int:
    """``glif-plot FILE.pth.tar --config CONFIG --out DIR``: the figures of one of the authors'
    checkpoints, drawn from a temporary glif-jax run of it."""
    import tempfile

    if not _prescan(argv, "config"):
        raise UsageError("an authors' checkpoint needs --config FILE (the experiment it belongs to)")
    rest, skip = [], False   # what glif-plot itself reads: all but the checkpoint and --config...
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("--config") and arg != checkpoint:
            rest.append(arg)
    from glif_jax.train import imported

    config, _, _, state = _imported_state(_file_config(argv, overrides=True), checkpoint)
    with tempfile.TemporaryDirectory(prefix="glif_imported_") as workdir:
        imported.import_to_workdir(config, state, checkpoint, workdir)
        return plot([workdir, *rest])


# ---- parsing helpers -------------------------------------------------------------------
RESUME_CHOICES = {"yes": "yes", "true": "yes", "auto": "auto", "no": "no", "false": "no"}


def _resume_flag_spelled_out(argv: list[str]) -> list[str]:
    """``--resume`` alone means ``--resume=yes`` and ``--noresume`` means ``--resume=no``;
    ``--init-from`` is ``--init_from``."""
    spelled = []
    for index, arg in enumerate(argv):
        arg = _underscored(arg)
        value_follows = index + 1 < len(argv) and argv[index + 1] in RESUME_CHOICES
        if arg == "--resume" and not value_follows:
            arg = "--resume=yes"
        elif arg == "--noresume":
            arg = "--resume=no"
        spelled.append(arg)
    return spelled


def _parse(values: flags.FlagValues, argv: list[str], usage: str, *,
           base_config: Callable[[], Any]) -> None:
    """Parses ``argv`` into ``values``; ``--help`` prints the usage (and the config) and exits.

    ``base_config()`` gives the config before any ``--config.<key>`` override, to name an
    override whose key it does not have."""
    if "-h" in argv or "--help" in argv or "--helpfull" in argv:
        values.mark_as_parsed()
        print(usage)
        config_path = _prescan(argv, "config")
        if config_path:
            values.unparse_flags()
            _parse_without_help(values, argv, base_config)
            print(f"config keys and values of {config_path}:\n")
            print(_describe_config(_loaded_config(values)))
        raise SystemExit(0)
    _parse_without_help(values, argv, base_config)


def _parse_without_help(values: flags.FlagValues, argv: list[str], base_config: Callable[[], Any]) -> None:
    argv = [arg for arg in argv if arg not in ("-h", "--help", "--helpfull")]
    try:
        remaining = values(argv)
    except (AttributeError, KeyError) as error:  # config_flags: override of an unknown key
        raise UsageError(_unknown_key_message(argv, base_config()) or str(error)) from None
    except flags.IllegalFlagValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # config file missing or failing to load
        raise UsageError(str(error)) from None
    if len(remaining) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(remaining[1:])}")


def _loaded_config(values: flags.FlagValues) -> ml_collections.ConfigDict:
    """The ``--config`` ConfigDict; a file that failed to load becomes a ``UsageError``."""
    config = values.config
    if isinstance(config, ml_collections.ConfigDict):
        return config
    try:
        config.get("seed")  # config_flags' stand-in for a failed load re-raises the load error
    except Exception as error:  # noqa: BLE001 - any failure of the user's config file
        raise UsageError(str(error)) from None
    raise UsageError(f"--config: get_config() must return a ConfigDict, got {type(config).__name__}")


def _prescan(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` in ``argv`` before real parsing."""
    for index, arg in enumerate(argv):
        if arg == f"--{name}" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _underscored(arg: str) -> str:
    """``--init-from`` / ``--from-gated-lif`` (as documented) are absl's ``--init_from`` / ``--from_gated_lif``."""
    for dashed, underscored in (("--init-from", "--init_from"), ("--from-gated-lif", "--from_gated_lif")):
        if arg == dashed or arg.startswith(dashed + "="):
            return underscored + arg[len(dashed):]
    return arg


def _file_config(argv: list[str], *, overrides: bool = False) -> Any:
    """The ``--config FILE`` config, without the command line's ``--config.<key>`` overrides
    (or with them, if ``overrides``)."""
    path = _prescan(argv, "config")
    args = [argv[0], "--config", path, *([arg for arg in argv if arg.startswith("--config.")] if overrides else [])]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=args)
    _parse_without_help(values, args, lambda: _file_config(argv))
    return _loaded_config(values)


def _unknown_key_message(argv: list[str], config: Any) -> str | None:
    """Names the first ``--config.<key>`` override whose key ``config`` does not have, with the
    keys it does have at that level (closest first); None if every override key exists."""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg.split("=", 1)[0][len("--config."):]
        node = config
        for depth, part in enumerate(key.split(".")):
            if not hasattr(node, "keys") or part not in node.keys():
                known = sorted(node.keys()) if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, known, n=3)
                where = "config" + "".join(f".{name}" for name in key.split(".")[:depth])
                return (
                    f"unknown config key --config.{key}: {where} has no field {part!r}"
                    + (f" (did you mean {', '.join(close)}?)" if close else "")
                    + (f"; its fields: {', '.join(known)}" if known else "")
                    + ". List the keys with: --config FILE --help"
                )
            node = node[part]
    return None


def _describe_config(config: Any, prefix: str = "config.") -> str:
    lines = []
    for key, value in sorted(config.items()):
        if hasattr(value, "items"):
            lines.append(_describe_config(value, f"{prefix}{key}."))
        else:
            lines.append(f"  {prefix}{key} = {value!r}")
    return "\n".join(line for line in lines if line)


def _summary(label: str, results: dict[str, float]) -> str:
    text = (
        f"{label}: top-1 {100 * results['eval_top1']:.2f}%  top-5 {100 * results['eval_top5']:.2f}%  "
        f"loss {results['eval_loss']:.4f}  ({int(results['eval_count'])} examples)"
    )
    if "best_eval_top1" in results:
        text += f"  best top-1 {100 * results['best_eval_top1']:.2f}%"
    return text
